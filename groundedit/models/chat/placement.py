"""Where a chat model's weights go on GPUs, decided before any weight is read.

The transformers backend serves models of every size: a 7B fits one GPU, Qwen2.5-VL-72B (~136 GiB
in bfloat16) needs several. A stage reserves its GPUs in its spec (``resources.gpus``; Ray then
shows the worker exactly those). :func:`plan_placement` builds the model on the meta device (no
memory, no weights), measures it, and returns either one device, a layer-wise ``device_map`` over
the visible GPUs (accelerate's ``infer_auto_device_map``, decoder layers never split), or a
:class:`PlacementError` that says why it cannot fit and points at vLLM — so a run never downloads
or loads 145 GB only to fail with an out-of-memory error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
# Share of each GPU's free memory the weights may take; the rest is for activations and KV cache.
DEFAULT_WEIGHT_FRACTION = 0.8


class PlacementError(RuntimeError):
    """The model cannot be placed on the GPUs this worker can see."""


@dataclass(frozen=True)
class Placement:
    """``device_map`` for ``from_pretrained``: ``{"": "cuda:0"}`` (one GPU) or per-module GPU indices."""

    device_map: dict[str, Any]
    weight_bytes: int

    @property
    def devices(self) -> list[Any]:
        return sorted(set(self.device_map.values()), key=str)

    @property
    def sharded(self) -> bool:
        return len(self.devices) > 1


def meta_model(model_cls: Any, config: Any, dtype: Any) -> Any:
    """The model's skeleton on the meta device: every parameter shape, no memory."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return model_cls.from_config(config, dtype=dtype)


def weight_bytes(model: Any, dtype: Any) -> int:
    """Bytes the parameters and buffers take once loaded in ``dtype`` (float tensors cast to it)."""
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        size = dtype.itemsize if t.is_floating_point() else t.element_size()
        total += t.numel() * size
    return total


def plan_placement(
    model: Any,
    dtype: Any,
    free: list[int],
    model_id: str,
    weight_fraction: float = DEFAULT_WEIGHT_FRACTION,
) -> Placement:
    """Place ``model`` (a meta skeleton) on GPUs ``0..len(free)-1`` with ``free[i]`` bytes free each.

    One GPU when it fits there; else layers spread over as many as needed; else PlacementError.
    """
    need = weight_bytes(model, dtype)
    budget = [int(f * weight_fraction) for f in free]
    if not budget:
        raise PlacementError(f"{model_id}: no GPU visible to this worker")
    if need <= budget[0]:
        return Placement({"": 0}, need)
    if need > sum(budget):
        raise PlacementError(
            f"{model_id} needs {need / GIB:.1f} GiB of weights in {_dtype_name(dtype)}, but the "
            f"{len(budget)} GPU(s) this worker sees offer {sum(budget) / GIB:.1f} GiB "
            f"({weight_fraction:.0%} of free memory): reserve more GPUs in the stage spec "
            "(resources.gpus), or serve it with vLLM (`backend: vllm`, tensor_parallel_size; "
            "`make install-gpu` installs it)"
        )
    from accelerate import infer_auto_device_map

    device_map = infer_auto_device_map(
        model,
        max_memory=dict(enumerate(budget)),
        no_split_module_classes=list(getattr(model, "_no_split_modules", None) or []),
        dtype=dtype,
    )
    spilled = sorted({str(d) for d in device_map.values() if not isinstance(d, int)})
    if spilled:
        raise PlacementError(
            f"{model_id}: {need / GIB:.1f} GiB of weights do not split over {len(budget)} GPU(s) "
            f"without spilling to {', '.join(spilled)}: reserve more GPUs or use `backend: vllm`"
        )
    return Placement(dict(device_map), need)


def free_bytes(gpus: list[int]) -> list[int]:
    """Free memory of each of ``gpus`` (indices among the GPUs this process sees; Ray shows a worker
    only its reservation)."""
    import torch

    return [torch.cuda.mem_get_info(i)[0] for i in gpus]


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
