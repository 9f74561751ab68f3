"""Local editing geometry and checks: crop around the target, blend the edit back, measure it.

- :func:`crop_window` — the target box grown by a context margin, clamped to the image.
- :func:`blend` — paste an edited crop back with an alpha that is 1 over the target and falls to 0
  at the crop's inner edges, so nothing outside the crop changes and there is no seam.
- :func:`dilate` — square dilation of a mask (removals inpaint a slightly grown mask).
- :func:`edit_metrics` — EGA (the paper's metric: the share of changed pixels that fall inside the
  target box), the share of pixels outside the box that changed, and the mean change inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]


def crop_window(box, width: int, height: int, margin_frac: float, min_margin: int) -> Box:
    """``box`` (xyxy, exclusive end) grown on every side by ``max(min_margin, margin_frac * longest
    box side)`` pixels and clamped to the image."""
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    m = max(min_margin, round(margin_frac * max(x2 - x1, y2 - y1)))
    return max(0, x1 - m), max(0, y1 - m), min(width, x2 + m), min(height, y2 + m)


def feather_alpha(crop: Box, width: int, height: int, feather: int) -> np.ndarray:
    """Alpha over the crop: 1 inside, ramping down to ~0 over ``feather`` pixels towards each crop
    edge that lies inside the image (edges on the image border need no seam)."""
    x1, y1, x2, y2 = crop
    h, w = y2 - y1, x2 - x1
    big = np.float32(1e9)
    top = np.arange(h, dtype=np.float32) if y1 > 0 else np.full(h, big)
    bottom = np.arange(h, dtype=np.float32)[::-1] if y2 < height else np.full(h, big)
    left = np.arange(w, dtype=np.float32) if x1 > 0 else np.full(w, big)
    right = np.arange(w, dtype=np.float32)[::-1] if x2 < width else np.full(w, big)
    dist = np.minimum.outer(np.minimum(top, bottom), np.minimum(left, right))
    if feather <= 0:
        return np.ones((h, w), np.float32)
    return np.clip((dist + 0.5) / feather, 0.0, 1.0).astype(np.float32)


def blend(src: np.ndarray, edited_crop: np.ndarray, crop: Box, feather: int) -> np.ndarray:
    """Copy of ``src`` with ``edited_crop`` (the crop's size) blended into ``crop``."""
    x1, y1, x2, y2 = crop
    h, w = src.shape[:2]
    if edited_crop.shape[:2] != (y2 - y1, x2 - x1):
        raise ValueError(f"edited crop is {edited_crop.shape[:2]}, crop window is {(y2 - y1, x2 - x1)}")
    alpha = feather_alpha(crop, w, h, feather)[..., None]
    out = src.copy()
    region = src[y1:y2, x1:x2].astype(np.float32)
    out[y1:y2, x1:x2] = (alpha * edited_crop.astype(np.float32) + (1 - alpha) * region + 0.5).astype(np.uint8)
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation by ``radius`` pixels, via two running-sum passes."""
    if radius <= 0:
        return mask.copy()
    m = mask.astype(np.int32)
    k = 2 * radius + 1
    rows = np.cumsum(np.pad(m, ((0, 0), (radius + 1, radius))), axis=1)
    m = (rows[:, k:] - rows[:, :-k]) > 0
    cols = np.cumsum(np.pad(m.astype(np.int32), ((radius + 1, radius), (0, 0))), axis=0)
    return (cols[k:] - cols[:-k]) > 0


@dataclass(frozen=True)
class EditMetrics:
    ega: float  # changed pixels inside the box / all changed pixels (0 when nothing changed)
    change_outside: float  # share of pixels outside the box that changed
    change_inside: float  # mean absolute change inside the box, 0..1
    changed_pixels: int


def edit_metrics(
    src: np.ndarray, edited: np.ndarray, box, threshold: int, region: Box | None = None
) -> EditMetrics:
    """Compare before/after; a pixel counts as changed when any channel moves by more than
    ``threshold`` (0..255). ``region`` (xyxy) promises that nothing outside it differs — the edit
    stage passes its crop — so only that window is compared."""
    h, w = src.shape[:2]
    x1, y1, x2, y2 = _clip(box, w, h)
    rx1, ry1, rx2, ry2 = _clip(region, w, h) if region is not None else (0, 0, w, h)
    a, b = src[ry1:ry2, rx1:rx2], edited[ry1:ry2, rx1:rx2]
    absdiff = np.maximum(a, b) - np.minimum(a, b)  # uint8 throughout: no int16 copies
    changed = absdiff.max(axis=-1) > threshold
    total = int(changed.sum())
    bx1, by1, bx2, by2 = max(x1, rx1) - rx1, max(y1, ry1) - ry1, min(x2, rx2) - rx1, min(y2, ry2) - ry1
    inside = changed[by1:by2, bx1:bx2]
    inside_changed = int(inside.sum()) if inside.size else 0
    box_area = (x2 - x1) * (y2 - y1)
    outside_area = h * w - box_area
    box_diff = np.maximum(src[y1:y2, x1:x2], edited[y1:y2, x1:x2]) - np.minimum(
        src[y1:y2, x1:x2], edited[y1:y2, x1:x2]
    )
    return EditMetrics(
        ega=inside_changed / total if total else 0.0,
        change_outside=(total - inside_changed) / outside_area if outside_area else 0.0,
        change_inside=float(box_diff.mean() / 255.0) if box_area else 0.0,
        changed_pixels=total,
    )


def _clip(box, w: int, h: int) -> Box:
    x1, y1, x2, y2 = (min(max(round(float(v)), 0), lim) for v, lim in zip(box, (w, h, w, h), strict=True))
    return x1, y1, x2, y2
