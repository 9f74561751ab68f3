"""Bytes per GPU of a training run, from the parameter shapes of the meta-built models, and the activation
estimate: the accounting behind ``groundedit train --plan`` (:mod:`groundedit.train.plan`, whose docstring
lists every item).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from groundedit.models.bagel import Bagel, BagelConfig, FluxVAE
from groundedit.models.bagel.config import LLMConfig, ViTConfig

from .spec import TrainSpec

GIB = 2**30
RESERVE = 2 * GIB  # CUDA context (~0.5-1 GiB), NCCL buffers, allocator fragmentation: our allowance


@dataclass
class MetaModels:
    """The models a run trains and reads, built on the meta device (:func:`plan.meta_models`)."""

    bagel: Bagel
    vae: FluxVAE
    sam_encoder: torch.nn.Module
    heads: torch.nn.Module


@dataclass(frozen=True)
class PackShape:
    """Token counts of one pack: all tokens and those of each kind."""

    tokens: int
    vae: int = 0  # latent tokens (clean and noised): the generation expert
    noised: int = 0
    vit: int = 0
    ce: int = 0

    def scaled(self, tokens: int) -> PackShape:
        """The same mix at ``tokens`` tokens."""
        k = tokens / max(self.tokens, 1)
        return PackShape(
            tokens, round(self.vae * k), round(self.noised * k), round(self.vit * k), round(self.ce * k)
        )


def _rms_saved(device: str) -> int:
    # Tensors F.rms_norm keeps for the backward: input and normalised output on the CPU (a composite of
    # pointwise ops), the input only on CUDA (one fused kernel; its rstd is negligible).
    return 2 if device == "cpu" else 1


def layer_values(llm: LLMConfig, device: str) -> int:
    """Values one MoT decoder layer keeps per token for the backward (either expert: the same shapes)."""
    d, dq, dkv, f = (
        llm.hidden_size,
        llm.num_attention_heads * llm.head_dim,
        llm.num_key_value_heads * llm.head_dim,
        llm.intermediate_size,
    )
    n = _rms_saved(device)
    norms = 2 * n * d + n * (dq + dkv)  # input / post-attention norms, q and k norms
    linear_inputs = 3 * d + dq - d  # q/k/v input, o_proj input (dq wide), MLP input
    attention = 2 * dq + 2 * dkv  # rotated q and k, v, attention output (flash keeps q, k, v, out)
    mlp = 4 * f  # gate (SiLU input), SiLU output, up, their product (down_proj input)
    return norms + linear_inputs + attention + mlp


def vit_layer_values(vit: ViTConfig) -> int:
    """Values one SigLIP layer keeps per token: two norm inputs, q/k/v input, q, k, v, out, out_proj input,
    fc1 input, GELU input and output."""
    return 8 * vit.hidden_size + 2 * vit.intermediate_size


def activation_bytes(
    config: BagelConfig, pack: PackShape, bytes_per_value: int, checkpointing: bool, device: str = "cuda"
) -> int:
    """Peak memory of one pack's forward and backward beyond weights, gradients and optimizer state.

    What autograd keeps (per token: :func:`layer_values` per decoder layer, :func:`vit_layer_values` per
    SigLIP layer; with activation checkpointing only each layer's input, plus one layer recomputed in the
    backward), the embeddings' and heads' tensors, the logits of the CE tokens (fp32, with their
    log-softmax), and the backward's working set of the layer being differentiated (its gradients of the
    MLP's four ffn-wide tensors and of a few hidden-wide ones)."""
    llm, vit = config.llm, config.vit
    d, f, layers = llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers
    t, b = pack.tokens, bytes_per_value
    per_layer, per_vit = layer_values(llm, device) * t, vit_layer_values(vit) * pack.vit
    if checkpointing:
        layers_kept = layers * d * t + per_layer  # every layer's input, one layer recomputed
        vit_kept = vit.layers_used * vit.hidden_size * pack.vit + per_vit
    else:
        layers_kept = layers * per_layer
        vit_kept = vit.layers_used * per_vit
    embeddings = t * d + pack.vae * (2 * d + 320) + pack.vit * (vit.hidden_size + 2 * d)
    heads = (
        _rms_saved(device) * t * d + t * d + (pack.ce + pack.noised) * d
    )  # final norms, aligned layer, head inputs
    backward = 4 * t * f + 4 * t * d
    logits = 3 * pack.ce * llm.vocab_size * 4  # fp32 logits, log-softmax, its gradient
    return (layers_kept + vit_kept + embeddings + heads + backward) * b + logits


def shard_numel(shape: torch.Size | tuple[int, ...], processes: int) -> int:
    """Values one rank holds of a tensor FSDP2 shards over ``processes`` (dim 0, ``torch.chunk``'s sizes,
    the largest shard: FSDP2 pads every shard to it)."""
    if processes == 1 or not shape:
        return math.prod(shape)
    return -(-shape[0] // processes) * math.prod(shape[1:])


def adamw_state_bytes(numel: int, eight_bit: bool) -> int:
    """Device bytes of AdamW's state for one tensor of ``numel`` values (torch's ``step`` lives on the CPU)."""
    if not eight_bit:
        return 2 * 4 * numel
    if numel >= 4096 and numel % 256 == 0:  # torchao's rule for quantising a moment
        return 2 * (numel + 4 * (numel // 256) + 4 * 256) + 4
    return 2 * 4 * numel + 4


def _layers_and_root(bagel: Bagel) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    layer_ids = {id(p) for p in bagel.language_model.model.layers.parameters()}
    root = [p for p in bagel.parameters() if id(p) not in layer_ids]
    return list(bagel.language_model.model.layers[0].parameters()), root


def memory_bytes(spec: TrainSpec, models: MetaModels, processes: int, pack: PackShape) -> dict[str, int]:
    """Bytes per GPU by item (see the module docstring)."""
    n, lora, autocast = processes, spec.lora.enabled, spec.runtime.autocast_bf16
    params = list(models.bagel.parameters())
    trainable = [p for p in params if p.requires_grad]
    head_params = list(models.heads.parameters())
    head_trainable = [p for p in head_params if p.requires_grad]
    mem: dict[str, int] = {}
    if lora:
        base = 2 if autocast else 4
        mem["weights"] = sum(p.numel() * (4 if p.requires_grad else base) for p in params)
        mem["working copies"] = sum(2 * p.numel() for p in trainable) if autocast else 0
        mem["gradients"] = sum(4 * p.numel() for p in trainable)
    elif n == 1:
        mem["weights"] = sum(4 * p.numel() for p in params)
        matmul = [p for name, p in models.bagel.named_parameters() if p.dim() == 2 and "embed" not in name]
        mem["working copies"] = sum(2 * p.numel() for p in matmul) if autocast else 0
        mem["gradients"] = sum(4 * p.numel() for p in trainable)
    else:
        compute = 2 if autocast and spec.runtime.fsdp_bf16 else 4
        layer, root = _layers_and_root(models.bagel)
        layer_numel, root_numel = sum(p.numel() for p in layer), sum(p.numel() for p in root)
        mem["weights"] = sum(4 * shard_numel(p.shape, n) for p in params)
        mem["working copies"] = compute * (root_numel + 2 * layer_numel)
        working_grads = (compute + 4) * (
            root_numel + 2 * layer_numel
        )  # unsharded grads and fp32 reduce input
        mem["gradients"] = sum(4 * shard_numel(p.shape, n) for p in trainable) + working_grads
        if spec.runtime.gradient_sync == "step":
            mem["gradients"] += sum(4 * p.numel() for p in trainable)
    shards = 1 if lora else n
    mem["optimizer"] = sum(
        adamw_state_bytes(shard_numel(p.shape, shards), spec.optim.eight_bit) for p in trainable
    )
    mem["optimizer"] += sum(adamw_state_bytes(p.numel(), spec.optim.eight_bit) for p in head_trainable)
    mem["EMA"] = sum(4 * shard_numel(p.shape, shards) for p in trainable) if spec.optim.ema_decay else 0
    mem["grounding heads"] = sum(4 * p.numel() for p in head_params) + sum(
        4 * p.numel() for p in head_trainable
    )
    vae_bytes = 2 if lora and autocast else 4
    mem["SAM encoder + VAE"] = sum(4 * p.numel() for p in models.sam_encoder.parameters())
    mem["SAM encoder + VAE"] += sum(vae_bytes * p.numel() for p in models.vae.parameters())
    checkpointing = spec.runtime.gradient_checkpointing
    mem["activations"] = activation_bytes(models.bagel.config, pack, 2 if autocast else 4, checkpointing)
    mem["reserve"] = RESERVE
    return mem
