"""One-GPU fine-tuning: LoRA adapters (``peft``) on Bagel's LM projections.

:func:`add_lora` injects adapters into the projections the spec names, in every decoder layer and both
experts (``q_proj`` and ``q_proj_moe_gen``, ``mlp.gate_proj`` and ``mlp_moe_gen.gate_proj``, ...), in
fp32, and freezes the rest of Bagel, which stays in the dtype it was loaded in (bf16 on CUDA: the trainer
loads the frozen base straight in bf16, never in fp32). ``peft`` wraps our plain ``nn.Linear`` modules
directly (``inject_adapter_in_model``: no ``PreTrainedModel`` needed), so nothing here is a hand-written
adapter.

:func:`merged_tensors` yields the official-layout state of the adapted model one tensor at a time — every
adapted weight ``W + (alpha / r) · B A`` under its original name — without touching the training model;
:func:`adapter_state_dict` is the adapter alone (``peft``'s names, without the adapter name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .errors import TrainError
from .spec import LoraSpec

ADAPTER_DIR = "adapter"


def target_pattern(targets: list[str]) -> str:
    """Regex (peft matches it against whole module names) for the targets in both experts of every layer."""
    names = "|".join(sorted(set(targets)))
    return rf"language_model\.model\.layers\.\d+\.(self_attn|mlp|mlp_moe_gen)\.({names})(_moe_gen)?"


def lora_config(spec: LoraSpec):
    from peft import LoraConfig

    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target_pattern(spec.targets),
    )


def add_lora(model: nn.Module, spec: LoraSpec) -> list[str]:
    """Inject adapters (fp32) and freeze the rest of ``model``; returns the adapted module names."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config(spec), model)  # also marks only the adapters as trainable
    adapted = [name for name, m in model.named_modules() if _is_lora(m)]
    if not adapted:
        raise TrainError(f"lora.targets {spec.targets} match no projection of the language model")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # peft gives adapters their base layer's dtype; they train in fp32
                p.data = p.data.float()
    return adapted


def _is_lora(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


@torch.no_grad()
def merged_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The official-layout state, one tensor at a time in the model's order: adapters folded into their
    base weights in fp32 (``W + (alpha / r) · B A``), every other tensor as it is."""
    adapted = {f"{name}.weight": m for name, m in model.named_modules() if _is_lora(m)}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        name = key.replace(".base_layer.", ".")
        m = adapted.get(name)
        if m is None:
            yield name, value
        else:
            yield (
                name,
                m.base_layer.weight.float() + sum(m.get_delta_weight(a).float() for a in m.active_adapters),
            )


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_adapter(folder: Path, model: nn.Module, spec: LoraSpec) -> Path:
    """``adapter_model.safetensors`` and ``adapter_config.json`` (peft's file names) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state_dict(model), str(folder / "adapter_model.safetensors"))
    config = lora_config(spec).to_dict()
    config["target_modules"] = target_pattern(spec.targets)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder
