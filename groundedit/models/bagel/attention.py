"""Attention over packed sequences: segments of queries, each over its own range of keys.

One forward of the language model carries many independent pieces (samples of a training pack; the
contexts and CFG branches of several edits). Each is a :class:`Segment`: a slice of the packed queries, the
slice of keys it sees, and an optional boolean mask. Keys either are the new tokens themselves (training,
full recompute) or live in a :class:`KVBuffer` that already holds each segment's cached context, into
which the new tokens' keys are written first (KV-cached prefill, decoding and denoising).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass(frozen=True)
class Segment:
    """Queries ``q`` attend to keys ``k``; ``mask`` [len(q), len(k)] (True = visible) or None for all."""

    q: slice
    k: slice
    mask: Tensor | None = None


def causal_mask(n_new: int, n_past: int, device: torch.device | None = None) -> Tensor:
    """Causal mask of n_new queries over n_past cached keys followed by the n_new keys themselves."""
    q = torch.arange(n_new, device=device)[:, None]
    k = torch.arange(n_past + n_new, device=device)[None, :]
    return k <= q + n_past


# Whether SDPA runs grouped KV heads natively on CUDA (flash); learned on first use, since it depends on
# the torch build. When it does not, KV heads are repeated so a fused kernel still runs (never the math one).
_CUDA_NATIVE_GQA: bool | None = None


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    global _CUDA_NATIVE_GQA
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads == kv_heads or not q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=heads != kv_heads)
    if mask is None and _CUDA_NATIVE_GQA is not False:
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
                out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            _CUDA_NATIVE_GQA = True
            return out
        except RuntimeError:
            _CUDA_NATIVE_GQA = False
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attend(q: Tensor, k: Tensor, v: Tensor, segments: list[Segment]) -> Tensor:
    """Scaled dot-product attention per segment. q [Tq, H, D], k/v [Tk, Hkv, D] → [Tq, H, D]."""
    outs = []
    for seg in segments:
        qs = q[seg.q].transpose(0, 1).unsqueeze(0)
        ks = k[seg.k].transpose(0, 1).unsqueeze(0)
        vs = v[seg.k].transpose(0, 1).unsqueeze(0)
        mask = None if seg.mask is None else seg.mask[None, None]
        outs.append(_sdpa(qs, ks, vs, mask)[0].transpose(0, 1))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


def attention_backend() -> str:
    """How grouped-query attention ran on CUDA so far (for benchmark reports)."""
    return {None: "not used yet", True: "native GQA (flash/cuDNN)", False: "repeated KV heads"}[
        _CUDA_NATIVE_GQA
    ]


class KVBuffer:
    """Per-layer key/value storage [capacity, Hkv, D] shared by the segments of cached forwards."""

    def __init__(self, layers: int, capacity: int, kv_heads: int, head_dim: int, like: Tensor) -> None:
        shape = (capacity, kv_heads, head_dim)
        self.keys = [like.new_empty(shape) for _ in range(layers)]
        self.values = [like.new_empty(shape) for _ in range(layers)]

    def write(self, start: int, kv: list[tuple[Tensor, Tensor]]) -> None:
        """Copy per-layer cached (keys, values) into rows start.. of every layer."""
        for layer, (k, v) in enumerate(kv):
            n = k.shape[0]
            if n:
                self.keys[layer][start : start + n].copy_(k)
                self.values[layer][start : start + n].copy_(v)

    def view(self, rows: slice) -> list[tuple[Tensor, Tensor]]:
        """Per-layer (keys, values) views of a row range."""
        return [(k[rows], v[rows]) for k, v in zip(self.keys, self.values, strict=True)]


class SegmentAttention:
    """The attention callable the decoder layers use: ``attention(layer, q, k, v) -> out``.

    Without a buffer the keys are the new tokens' own (full recompute). With one, the new keys/values are
    first written to ``buffer`` rows ``new_rows`` (aligned with the packed queries), then every segment
    reads its key slice of the buffer.
    """

    def __init__(
        self, segments: list[Segment], buffer: KVBuffer | None = None, new_rows: Tensor | None = None
    ) -> None:
        if (buffer is None) != (new_rows is None):
            raise ValueError("a KV buffer needs the rows of the new tokens, and only then")
        self.segments = segments
        self.buffer = buffer
        self.new_rows = new_rows

    def __call__(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.buffer is not None:
            keys, values = self.buffer.keys[layer], self.buffer.values[layer]
            keys.index_copy_(0, self.new_rows, k.to(keys.dtype))
            values.index_copy_(0, self.new_rows, v.to(values.dtype))
            k, v = keys, values
        return attend(q, k, v, self.segments)
