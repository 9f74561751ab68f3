"""Small building blocks shared by the Bagel modules: norms, RoPE, fixed position tables, heads."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Qwen2 RMSNorm (statistics in float32). ``F.rms_norm`` upcasts the same way and fuses on CUDA."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """Float32 cos/sin tables of standard (half-split) RoPE for integer positions, shape [T, head_dim]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


class _FusedOnCuda:
    """A pointwise function compiled into one kernel for CUDA inference; eager everywhere else.

    These chains of elementwise ops are memory-bound and were ~10% of a denoising step on an H100 when
    run op by op. If compilation fails (no Triton, unsupported setup) the eager function is used.
    """

    enabled = True

    def __init__(self, fn) -> None:
        self.fn, self.compiled, self.failed = fn, None, False

    def __call__(self, *args: Tensor) -> Tensor:
        if self.failed or not (self.enabled and args[0].is_cuda and not torch.is_grad_enabled()):
            return self.fn(*args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            return self.compiled(*args)
        except Exception as exc:  # compilation problems must not break inference
            self.failed = True
            warnings.warn(
                f"torch.compile of {self.fn.__name__} failed, running it eagerly: {exc}", stacklevel=2
            )
            return self.fn(*args)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x.float().chunk(2, dim=-1)
    c, s = cos[:, None, :half], sin[:, None, :half]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def _silu_mul(gate: Tensor, up: Tensor) -> Tensor:
    return F.silu(gate) * up


# Rotate x [T, heads, head_dim] by the tables [T, head_dim] (equal halves); computed in float32.
apply_rope = _FusedOnCuda(_rope)
# The SiLU-gated product of the MLP.
silu_mul = _FusedOnCuda(_silu_mul)


def fused_status() -> str:
    """Whether the fused pointwise kernels are in use (for benchmark reports)."""
    states = [
        ("failed" if f.failed else "compiled" if f.compiled else "unused") for f in (apply_rope, silu_mul)
    ]
    return f"rope: {states[0]}, silu_mul: {states[1]}"


def sincos_2d_table(grid: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos table [grid*grid, dim] for flattened ids row*grid+col.

    The first half of each row encodes the column, the second half the row (the layout of the official
    table, which the checkpoint stores); each half is [sin | cos] over dim/4 frequencies.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows = coords.repeat_interleave(grid)
    cols = coords.repeat(grid)

    def encode(pos: Tensor) -> Tensor:
        angles = pos[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


class PositionTable(nn.Module):
    """A frozen 2-D sin-cos table looked up by flattened position id (``pos_embed`` in the checkpoint)."""

    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.pos_embed = nn.Parameter(torch.zeros(grid * grid, dim), requires_grad=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d_table(self.grid, self.pos_embed.shape[1]))

    def forward(self, ids: Tensor) -> Tensor:
        return self.pos_embed[ids]


class TimestepEmbedder(nn.Module):
    """Sinusoid of a flow time t∈[0,1] (cos half first, 256 features) followed by a SiLU MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device).float() / half)
        args = t.float()[:, None] * freqs[None]
        feats = torch.cat([args.cos(), args.sin()], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class Connector(nn.Module):
    """ViT features → LLM width: fc1, tanh-GELU, fc2."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def patchify(x: Tensor, p: int) -> Tensor:
    """[C, H, W] → [(H/p)*(W/p), p*p*C], patches row-major, each flattened as (row, col, channel)."""
    c, h, w = x.shape
    x = x.reshape(c, h // p, p, w // p, p).permute(1, 3, 2, 4, 0)
    return x.reshape((h // p) * (w // p), p * p * c)


def unpatchify(tokens: Tensor, h: int, w: int, p: int) -> Tensor:
    """Inverse of :func:`patchify` for an h×w grid of patches: → [C, h*p, w*p]."""
    c = tokens.shape[-1] // (p * p)
    x = tokens.reshape(h, w, p, p, c).permute(4, 0, 2, 1, 3)
    return x.reshape(c, h * p, w * p)


def grid_position_ids(h: int, w: int, max_per_side: int, device: torch.device | None = None) -> Tensor:
    """Flattened ids row*max_per_side+col of an h×w grid (the official 'extrapolate' rule)."""
    if h > max_per_side or w > max_per_side:
        raise ValueError(f"grid {h}x{w} exceeds the position table's {max_per_side} per side")
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    return (rows * max_per_side + cols).flatten()
