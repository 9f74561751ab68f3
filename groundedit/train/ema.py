"""An exponential moving average of the trained weights (what ``model/`` holds when ``optim.ema_decay`` is set).

Like the official trainer's, the average starts at the initial weights and follows every optimizer step:
``ema ← decay · ema + (1 − decay) · θ``. Only trainable parameters are averaged (a frozen one is its own
average), in fp32. Under FSDP2 each average is a DTensor sharded like its parameter, so a rank holds its
shard only; with LoRA it is the adapters' average. At the end the averages are copied into the model, which
is then exported like any trained model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """fp32 averages of ``module``'s trainable parameters (by name)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        with torch.no_grad():
            self.averages = {n: p.detach().to(torch.float32, copy=True) for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move every average towards its parameter (after an optimizer step)."""
        for name, p in self.params.items():
            self.averages[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the trained parameters with their averages (before the export)."""
        for name, p in self.params.items():
            p.copy_(self.averages[name])

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.averages)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.averages.keys() - state.keys(), state.keys() - self.averages.keys()
        if missing or unexpected:
            raise KeyError(
                f"EMA state does not match: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for name, value in state.items():
            self.averages[name].copy_(value)
