"""The auxiliary grounding losses (paper eq. 2-4) as small pure functions on tensors.

Grids are (height, width) of row-major token rows: a token tensor [h*w, D] is the image's tokens in the
order Bagel packs them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def negative_cosine(pred: Tensor, target: Tensor) -> Tensor:
    """−cos(pred, target), averaged over rows when given [N, D] rows (−1: aligned, +1: opposite)."""
    return -F.cosine_similarity(pred.float(), target.float(), dim=-1).mean()


def weighted_mean(rows: Tensor, weights: Tensor) -> Tensor:
    """Σ w_i rows_i / Σ w_i over rows [N, D] with weights [N] ≥ 0 (a masked mean for 0/1 weights)."""
    weights = weights.to(rows.dtype)
    return (weights[:, None] * rows).sum(0) / weights.sum().clamp_min(1e-6)


def mask_coverage(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """Share of each cell of ``grid`` (h, w) that ``mask`` [H, W] covers, the image split into h x w equal
    cells (sizes that do not divide evenly get adaptive pooling's overlapping cells): [h*w]."""
    return F.adaptive_avg_pool2d(mask.float()[None, None], grid).flatten()


def resize_tokens(tokens: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Tokens [h*w, D] on ``grid`` bilinearly resampled to ``size`` (H, W): [H*W, D]."""
    d = tokens.shape[-1]
    x = tokens.reshape(*grid, d).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).reshape(-1, d)


def mask_bce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of mask logits against a 0/1 target of the same shape."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def text_vision_alignment(
    project: Callable[[Tensor], Tensor], edited: Tensor, coverage: Tensor, location: Tensor
) -> Tensor:
    """Ltv = −cos(Pt(mean of the edited-image states inside the mask), mean of the location-step states).

    ``edited`` [n, D] noised edited-image states, ``coverage`` [n] their mask weights, ``location`` [m, D]
    the "target location" text states.
    """
    return negative_cosine(project(weighted_mean(edited, coverage)), location.mean(0))


def vision_vision_alignment(
    project: Callable[[Tensor], Tensor],
    edited: Tensor,
    edited_grid: tuple[int, int],
    vit: Tensor,
    vit_grid: tuple[int, int],
) -> Tensor:
    """Lvv = −mean over ViT patches of cos(Pv(edited states resized to the ViT grid), ViT-token states)."""
    return negative_cosine(project(resize_tokens(edited, edited_grid, vit_grid)), vit)


def binary_target(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A 0/1 mask [H, W] area-resampled to ``size`` and re-binarised at one half."""
    m = F.adaptive_avg_pool2d(mask.float()[None, None], size)[0, 0]
    return (m > 0.5).float()


def grid_of(n_tokens: int, image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Token grid of an image of ``image_hw`` pixels at ``stride`` pixels per token (checked)."""
    grid = (image_hw[0] // stride, image_hw[1] // stride)
    if grid[0] * grid[1] != n_tokens:
        raise ValueError(f"{n_tokens} tokens do not fit a {image_hw} image at stride {stride}")
    return grid
