"""Attention over packed sequences: segments of queries, each over its own set of keys.

One forward of the language model carries many independent pieces (samples of a training pack; the
contexts and CFG branches of several edits). Each is a :class:`Segment`: a slice of the packed queries and
the keys it sees (a slice, or the rows of a sample whose keys have holes), either all of them, the last
``len(q)`` of them causally (lower-right causal: a text split after its context), or under an explicit
boolean mask. Keys either are the new tokens themselves (training, full recompute) or live in a
:class:`KVBuffer` that already holds each segment's cached context, into which the new tokens' keys are
written first (KV-cached prefill, decoding and denoising).

A training sample is cut into one segment per split (:func:`split_segments`), so no [L, L] mask is ever
built: every call is a fused kernel (flash on CUDA and CPU) over one split's queries, with grouped KV heads
passed as they are (``enable_gqa``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import CausalBias, causal_lower_right


@dataclass(frozen=True)
class Segment:
    """Queries ``q`` attend to keys ``k`` (a slice, or a 1-D tensor of key rows). ``causal``: query i sees
    the keys up to ``len(k) - len(q) + i`` (the queries are the last keys); ``mask`` [len(q), len(k)]
    (True = visible) otherwise, or None for all."""

    q: slice
    k: slice | Tensor
    mask: Tensor | None = None
    causal: bool = False


def split_segments(
    start: int, split_lens: list[int], modes: list[str], device: torch.device | None = None
) -> list[Segment]:
    """One segment per split of a packed sample starting at ``start`` (Bagel's rules, see ``packing``):
    a split sees every earlier split except noised ones, plus itself (causally for 'causal' splits)."""
    segments, visible, pos, holes = [], [], start, False
    for length, mode in zip(split_lens, modes, strict=True):
        end = pos + length
        if holes:
            rows = torch.cat([*visible, torch.arange(pos, end)]).to(device)
            keys: slice | Tensor = rows
        else:
            keys = slice(start, end)
        segments.append(Segment(slice(pos, end), keys, causal=mode == "causal"))
        if mode == "noise":
            holes = True
        else:
            visible.append(torch.arange(pos, end))
        pos = end
    return segments


# Whether SDPA runs grouped KV heads natively on CUDA (flash); learned on first use, since it depends on
# the torch build. When it does not, KV heads are repeated so a fused kernel still runs (never the math one).
_CUDA_NATIVE_GQA: bool | None = None


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    global _CUDA_NATIVE_GQA
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads == kv_heads or not q.is_cuda:
        # CPU: the flash kernel takes grouped heads and masks.
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=heads != kv_heads)
    # A dense mask sends SDPA to kernels without grouped heads; none, or lower-right causal, can use flash.
    if (mask is None or isinstance(mask, CausalBias)) and _CUDA_NATIVE_GQA is not False:
        try:
            kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]
            with sdpa_kernel(kernels) if mask is None else nullcontext():
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            _CUDA_NATIVE_GQA = True
            return out
        except RuntimeError:
            _CUDA_NATIVE_GQA = False
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _lower_right(n_q: int, n_k: int, device: torch.device) -> Tensor:
    """Causal over the last ``n_q`` of ``n_k`` keys: flash takes it as is on CUDA; elsewhere the small
    [n_q, n_k] mask (only text splits are causal) is built."""
    if device.type == "cuda":
        return causal_lower_right(n_q, n_k)
    return torch.arange(n_k, device=device)[None, :] <= torch.arange(n_q, device=device)[:, None] + (
        n_k - n_q
    )


def attend(q: Tensor, k: Tensor, v: Tensor, segments: list[Segment]) -> Tensor:
    """Scaled dot-product attention per segment. q [Tq, H, D], k/v [Tk, Hkv, D] → [Tq, H, D]."""
    outs = []
    for seg in segments:
        qs = q[seg.q].transpose(0, 1).unsqueeze(0)
        if isinstance(seg.k, slice):
            ks, vs = k[seg.k], v[seg.k]
        else:
            ks, vs = k.index_select(0, seg.k), v.index_select(0, seg.k)
        ks, vs = ks.transpose(0, 1).unsqueeze(0), vs.transpose(0, 1).unsqueeze(0)
        if seg.causal:
            mask = _lower_right(qs.shape[2], ks.shape[2], q.device)
        else:
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
