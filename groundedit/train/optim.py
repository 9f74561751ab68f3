"""The optimizer and the learning-rate schedule, built from the spec: the one place the learning rate is set.

AdamW over the trained parameters (Bagel's and the grounding heads'). With ``optim.eight_bit`` its two
moments are kept in 8 bits by torchao's ``AdamW8bit`` (on any device, and with FSDP2's sharded DTensor
parameters); where torchao is missing, bitsandbytes' ``AdamW8bit`` serves one CUDA process (it cannot take
sharded parameters). The learning rate rises linearly over ``warmup_steps`` to its peak — ``lora.lr`` in
LoRA mode, ``optim.lr`` otherwise — and stays there. It is a function of the step alone, so a resumed run
needs nothing but the step to continue the schedule.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from .errors import TrainError
from .spec import TrainSpec


def peak_lr(spec: TrainSpec) -> float:
    """The learning rate after warm-up: ``lora.lr`` when training adapters (if set), else ``optim.lr``."""
    if spec.lora.enabled and spec.lora.lr is not None:
        return spec.lora.lr
    return spec.optim.lr


def lr_at(spec: TrainSpec, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant."""
    return peak_lr(spec) * min(1.0, (step + 1) / (spec.optim.warmup_steps + 1))


def set_lr(optimizer: torch.optim.Optimizer, spec: TrainSpec, step: int) -> float:
    """Give every parameter group the learning rate of ``step``; returns it."""
    lr = lr_at(spec, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def eight_bit_backend(device: torch.device, sharded: bool) -> str:
    """Which library keeps 8-bit AdamW state here ('torchao' or 'bitsandbytes'); raises when none can."""
    if importlib.util.find_spec("torchao") is not None:
        return "torchao"
    if importlib.util.find_spec("bitsandbytes") is not None and device.type == "cuda" and not sharded:
        return "bitsandbytes"
    where = "under FSDP2 (--nproc-per-node)" if sharded else f"on {device.type}"
    raise TrainError(f"optim.eight_bit {where} needs torchao: pip install 'groundedit[gpu]'")


def build_optimizer(
    params: list[nn.Parameter], spec: TrainSpec, device: torch.device, sharded: bool = False
) -> torch.optim.Optimizer:
    """AdamW over ``params`` as ``spec.optim`` says (8-bit state with ``eight_bit``), at the step-0 rate."""
    o = spec.optim
    kwargs = {"lr": lr_at(spec, 0), "betas": o.betas, "eps": o.eps, "weight_decay": o.weight_decay}
    if not o.eight_bit:
        return torch.optim.AdamW(params, **kwargs)
    if eight_bit_backend(device, sharded) == "torchao":
        from torchao.optim import AdamW8bit

        return AdamW8bit(params, **kwargs)
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit(params, **kwargs)
