"""Pixel metrics of one edit: where it changed the image (EGA, leakage) and how well it kept the
rest (PSNR / SSIM on the unedited region).

- **EGA** (the paper's Editing Grounding Accuracy): of the pixels the edit changed, the share that
  lies inside the target box. A pixel counts as changed when any channel moved by more than
  ``change_threshold`` (0-255; default 24, the edit stage's, so JPEG noise and resampling do not
  count). Computed at the source's resolution. When nothing changed EGA is undefined (None).
- **Leakage**: the share of pixels outside the target box that changed (same threshold).
- **PSNR / SSIM on the unedited region**, as SmartEdit's evaluation computes them: source and edited
  image resized to ``size`` x ``size`` (bicubic; 0 keeps the source size), the target (mask if
  given, else box) zeroed in both, then PSNR and SSIM over the whole image with data range 1. SSIM
  is the standard one (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, mean
  over the windows that fit and over channels), written here on torch's conv2d, which the project
  already depends on. PSNR of identical regions is capped at ``PSNR_CAP`` dB instead of infinity,
  so averages stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from groundedit.image.editing import edit_metrics

PSNR_CAP = 100.0
DEFAULT_CHANGE_THRESHOLD = 24
DEFAULT_SIZE = 256


@dataclass(frozen=True)
class PixelMetrics:
    ega: float | None
    leakage: float
    changed_pixels: int
    psnr: float
    ssim: float


def box_of_mask(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight xyxy bound (exclusive end) of a boolean mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def target_mask(shape: tuple[int, int], box, mask: np.ndarray | None) -> np.ndarray:
    """The target as a boolean (H, W) mask: ``mask`` when given, else the ``box`` rectangle."""
    if mask is not None:
        return mask.astype(bool)
    out = np.zeros(shape, bool)
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    out[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1], capped at :data:`PSNR_CAP`."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM of two (H, W, C) float images (Gaussian 11x11, sigma 1.5, valid windows only)."""
    import torch
    import torch.nn.functional as F

    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two (H, W, C) images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels, got {a.shape[1]}x{a.shape[0]}")
    c = a.shape[2]
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64)).permute(2, 0, 1)[None]
    w = _gaussian_window().expand(c, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, w, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx**2 + my**2 + c1) * (vx + vy + c2)
    return float((num / den).mean())


def _resized(rgb: np.ndarray, size: int) -> np.ndarray:
    if size <= 0 or rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


def unedited_region(
    src: np.ndarray, edited: np.ndarray, target: np.ndarray, size: int = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Source and edited image at ``size``, in [0, 1], with the target zeroed in both."""
    keep = target.astype(np.uint8) * 255
    if size > 0:
        keep = np.asarray(Image.fromarray(keep).resize((size, size), Image.Resampling.NEAREST))
    keep = (1.0 - keep.astype(np.float64) / 255.0)[..., None]
    a = _resized(src, size).astype(np.float64) / 255.0 * keep
    b = _resized(edited, size).astype(np.float64) / 255.0 * keep
    return a, b


def pixel_metrics(
    src: np.ndarray,
    edited: np.ndarray,
    box,
    mask: np.ndarray | None = None,
    change_threshold: int = DEFAULT_CHANGE_THRESHOLD,
    size: int = DEFAULT_SIZE,
) -> PixelMetrics:
    """Every pixel metric of one edit; ``src`` and ``edited`` are (H, W, 3) uint8 of one size, ``box``
    the target's xyxy in pixels (exclusive end), ``mask`` its optional (H, W) mask."""
    if src.shape != edited.shape:
        raise ValueError(f"source {src.shape} and edited {edited.shape} differ in size")
    m = edit_metrics(src, edited, box, change_threshold)
    a, b = unedited_region(src, edited, target_mask(src.shape[:2], box, mask), size)
    return PixelMetrics(
        ega=m.ega if m.changed_pixels else None,
        leakage=m.change_outside,
        changed_pixels=m.changed_pixels,
        psnr=psnr(a, b),
        ssim=ssim(a, b),
    )
