"""Data-parallel training under torchrun: the process group, FSDP2 sharding of Bagel, replicated heads.

``groundedit train --nproc-per-node N`` (or ``torchrun ... -m groundedit.cli train``) starts one process per
device; torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Bagel is sharded with FSDP2
(``fully_shard`` per decoder layer, then the root for embeddings, ViT and the joining heads); on CUDA the
compute params are bf16 and gradients reduce in fp32. The grounding heads are small (tens of MB), so every
rank keeps a full copy and their gradients are summed with one all-reduce. FSDP2 runs on CPU with gloo in
torch 2.13 (checked), so the CPU tests exercise the same path as GPUs; no DDP fallback is needed.

Each rank's loss is already divided by the step's global unit counts, so the gradient of the global
batch's loss is the *sum* of the ranks' gradients. FSDP2 averages across ranks (its divide factor needs
NCCL's PREMUL_SUM, which gloo lacks), so each rank back-propagates ``world_size ×`` its loss and every
gradient reduction here is an average too.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor


@dataclass(frozen=True)
class World:
    """This process's place in the run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64, so counts and losses add exactly enough)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)  # a CPU tensor: gloo carries it (the CUDA process group has gloo for CPU)
        return t.tolist()

    def max(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def init_world(device_name: str) -> World:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); a no-op without torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        backend = "cuda:nccl,cpu:gloo" if cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return World(rank, size, local)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def device_of(world: World, name: str) -> torch.device:
    """The spec's device; 'auto' is this rank's GPU when there is one."""
    if name == "auto":
        return torch.device(f"cuda:{world.local_rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and world.distributed:
        return torch.device(f"cuda:{world.local_rank}")
    return torch.device(name)


def shard_bagel(model: nn.Module, bf16: bool) -> None:
    """FSDP2 over Bagel: one unit per decoder layer, then the root (everything else). With ``bf16`` the
    layers compute with bf16 copies of the fp32 shards and gradients are reduced in fp32."""
    policy = MixedPrecisionPolicy()
    if bf16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.language_model.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


@torch.no_grad()
def load_sharded_weights(model: nn.Module, path, device: torch.device, world: World) -> None:
    """Fill a sharded meta-device model straight from the safetensors file: every rank reads only its own
    rows of each tensor (FSDP2 shards dim 0 in ``torch.chunk`` order) and casts them to the shard's dtype,
    so no process ever holds the whole model, in any dtype. The file must be on storage every node sees."""
    from safetensors import safe_open

    model.to_empty(device=device)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for name, tensor in model.state_dict().items():
            if not isinstance(tensor, DTensor):
                tensor.copy_(f.get_tensor(name))
                continue
            local = tensor.to_local()
            rows = -(-tensor.shape[0] // world.size)  # torch.chunk's chunk size
            start = min(world.rank * rows, tensor.shape[0])
            if local.shape[0] != min(rows, tensor.shape[0] - start) or tensor.placements[0].dim != 0:
                raise RuntimeError(f"{name}: unexpected shard {tuple(local.shape)} of {tuple(tensor.shape)}")
            if local.shape[0]:
                local.copy_(f.get_slice(name)[start : start + local.shape[0]])


def full_tensors(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """A sharded model's state one whole tensor at a time (every rank must iterate: each is gathered)."""
    for name, tensor in model.state_dict().items():
        yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Whether FSDP2 reduce-scatters gradients after the next backward (off: they accumulate unsharded,
    in fp32, until a backward with it on)."""
    model.set_requires_gradient_sync(enabled)


def zero_touch(model: nn.Module) -> Tensor | float:
    """``0 ×`` one element of every trainable parameter the root FSDP unit holds unsharded after the
    forward (embeddings, lm_head, ViT, connector, ...). Added to a loss, it gives each of them a (zero)
    gradient on every rank: FSDP2's reduce-scatter needs the same gradients on all ranks, and a rank whose
    samples had, say, every ViT image dropped by CFG dropout would otherwise leave the ViT without one."""
    parts = [
        p.reshape(-1)[:1].float()
        for p in model.parameters()
        if p.requires_grad and not isinstance(p, DTensor)
    ]
    return torch.cat(parts).sum() * 0.0 if parts else 0.0


def average_replicated_grads(world: World, params: list[nn.Parameter]) -> None:
    """Average the gradients of parameters every rank holds whole (the grounding heads) over ranks, as
    FSDP2 does for the sharded ones. A parameter no rank gave a gradient keeps none (as in one process:
    the optimizer then skips it)."""
    if not world.distributed or not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(has)
    dist.all_reduce(flat)
    for p, any_grad, part in zip(params, has.tolist(), flat.split([p.numel() for p in params]), strict=True):
        p.grad = (part / world.size).view_as(p).clone() if any_grad else None


def clip_gradients(groups: list[list[nn.Parameter]], max_norm: float) -> Tensor:
    """Clip the global gradient norm over groups that may mix sharded (DTensor) and whole parameters."""
    norms = []
    for params in groups:
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads)
            norms.append((norm.full_tensor() if isinstance(norm, DTensor) else norm).float().cpu())
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
    for params in groups:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
