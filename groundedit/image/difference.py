"""Where two pictures of one scene differ: the pixel proposal of an edit pair's region.

The proposal is a perceptual colour difference (CIE76 ΔE in CIELAB, D65) of the two images after a
light Gaussian blur (JPEG noise and resampling ringing stay below the threshold), thresholded, cleaned
up morphologically (an opening drops speckle, a closing and the filling of small holes make one
region of an object whose inside matched by chance) and split into connected components; components smaller than
a share of the image are noise. Each component is then cut back to where its difference is at least
half its median (the absolute threshold is crossed a pixel or two outside a strong edit, where blur
and JPEG's halved chroma resolution spread it). What is left is the edit's mask; its tight bound is
the box.

sRGB → CIELAB is the textbook formula (a dozen lines): scikit-image has it, but would be a large
dependency for one conversion; scipy's ndimage does the morphology and the labelling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float32,
)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an 8-bit sRGB image, float32 ``(H, W, 3)``: L in [0, 100]."""
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def delta_e(a: np.ndarray, b: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """Per-pixel CIE76 colour difference of two same-size 8-bit RGB images, each blurred first."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    la, lb = srgb_to_lab(a), srgb_to_lab(b)
    if blur_sigma > 0:
        sigma = (blur_sigma, blur_sigma, 0)
        la, lb = ndimage.gaussian_filter(la, sigma), ndimage.gaussian_filter(lb, sigma)
    return np.sqrt(((la - lb) ** 2).sum(axis=-1))


@dataclass(frozen=True)
class ChangeParams:
    threshold: float = 12.0  # ΔE above which a pixel changed
    blur_sigma: float = 1.0
    open_radius: int = 1  # speckle smaller than this goes
    close_radius: int = 2  # gaps narrower than this close
    min_component: float = 0.001  # components below this share of the image are noise
    edge_level: float = 0.5  # a component's edge: where ΔE falls below this share of its median


@dataclass(frozen=True)
class ChangeRegion:
    """The changed pixels of a pair. ``raw_fraction``: share of pixels above the threshold before any
    cleanup (what tells a global edit); ``mask``: the cleaned region; ``box``: its tight bound
    (exclusive right/bottom), None when nothing is left."""

    mask: np.ndarray
    box: tuple[int, int, int, int] | None
    raw_fraction: float
    fraction: float
    components: int
    mean_delta: float  # mean ΔE inside the mask (0 when empty)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def change_region(src: np.ndarray, tgt: np.ndarray, p: ChangeParams | None = None) -> ChangeRegion:
    """The region where ``tgt`` differs from ``src`` (same-size 8-bit RGB arrays)."""
    p = p or ChangeParams()
    de = delta_e(src, tgt, p.blur_sigma)
    raw = de > p.threshold
    total = raw.size
    mask = raw
    if p.open_radius > 0:
        mask = ndimage.binary_opening(mask, structure=_disk(p.open_radius))
    if p.close_radius > 0:
        r = p.close_radius  # padded, so the closing does not erode regions that touch the border
        padded = np.pad(mask, r, mode="edge")
        mask = ndimage.binary_closing(padded, structure=_disk(r))[r:-r, r:-r]
    mask = fill_small_holes(mask)
    labels, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= p.min_component * total) + 1
        mask = np.zeros_like(mask)
        for k in keep:
            mask |= _refined(labels == k, de, p.edge_level)
        n = len(keep)
    area = int(mask.sum())
    box = None
    if area:
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
    return ChangeRegion(
        mask=mask,
        box=box,
        raw_fraction=float(raw.sum()) / total,
        fraction=area / total,
        components=int(n),
        mean_delta=float(de[mask].mean()) if area else 0.0,
    )


_RIM = 3  # pixels from a component's edge where the cut applies (the spread is a pixel or two)


def _refined(component: np.ndarray, de: np.ndarray, level: float) -> np.ndarray:
    """A component's rim cut back to where its ΔE is at least ``level`` times its median: the
    threshold is crossed a pixel or two outside a strong edit's edge (blur, JPEG chroma subsampling),
    half the edit's own strength is where its edge is. The inside is kept whatever its ΔE (a pasted
    object over a varied background differs more in some places than in others)."""
    if level <= 0:
        return component
    rim = component & ~ndimage.binary_erosion(component, iterations=_RIM)
    cut = component & ~(rim & (de < level * float(np.median(de[component]))))
    return fill_small_holes(cut)


def fill_small_holes(mask: np.ndarray, max_share: float = 0.02) -> np.ndarray:
    """``mask`` with its holes smaller than ``max_share`` of its area filled: a speck inside an edit
    whose colour matched by chance is part of it; a real hole (an object the edited one wraps
    around) is not."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    labels, _ = ndimage.label(holes)
    sizes = np.bincount(labels.ravel())[1:]
    small = np.flatnonzero(sizes <= max_share * max(1, int(mask.sum()))) + 1
    return mask | np.isin(labels, small)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / float(union)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0.0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return 0.0 if union <= 0 else inter / union
