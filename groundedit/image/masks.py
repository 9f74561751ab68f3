"""COCO RLE masks: decode, encode, bound, and transform with the image's EXIF orientation."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from groundedit.image.codec import SampleError
from groundedit.records import RLE


def _coco(rle: RLE) -> dict:
    return {"size": list(rle.size), "counts": rle.counts.encode("ascii")}


def rle_from_json(segmentation: dict) -> RLE:
    """Validate an SA-1B ``segmentation`` entry (compressed COCO RLE)."""
    try:
        h, w = (int(v) for v in segmentation["size"])
        counts = segmentation["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise SampleError("bad_rle", f"segmentation is not a COCO RLE: {e}") from e
    if not isinstance(counts, str) or h <= 0 or w <= 0:
        raise SampleError("bad_rle", "expected compressed RLE with a string 'counts' and positive size")
    return RLE(size=(h, w), counts=counts)


def decode(rle: RLE) -> np.ndarray:
    """Boolean mask of shape ``rle.size``, C-contiguous.

    pycocotools decodes column-major; transposing a whole photo-sized mask costs more than the
    decode, so only the mask's bounding box is copied into a zeroed row-major array.
    """
    coco = _coco(rle)
    try:
        fortran = mask_utils.decode(coco)
        x, y, w, h = (round(float(v)) for v in mask_utils.toBbox(coco))
    except Exception as e:  # pycocotools raises bare exceptions on corrupt counts
        raise SampleError("bad_rle", str(e)) from e
    out = np.zeros(rle.size, dtype=bool)
    out[y : y + h, x : x + w] = fortran[y : y + h, x : x + w]
    return out


def encode(mask: np.ndarray) -> RLE:
    m = np.asfortranarray(mask.astype(np.uint8))
    out = mask_utils.encode(m)
    return RLE(size=(int(out["size"][0]), int(out["size"][1])), counts=out["counts"].decode("ascii"))


def area(rle: RLE) -> int:
    return int(mask_utils.area(_coco(rle)))


def bbox_xyxy(rle: RLE) -> tuple[int, int, int, int]:
    """Tight bound of the mask in pixels, exclusive right/bottom; (0, 0, 0, 0) for an empty mask."""
    x, y, w, h = (round(float(v)) for v in mask_utils.toBbox(_coco(rle)))
    return x, y, x + w, y + h


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale a boolean mask to ``size`` (width, height): an output pixel is set when at least half the
    area it covers is (box filter). Pixel centres map as in PIL's image resize, so the mask stays
    aligned with the image scaled to the same size. Only the mask's bounding box is resampled."""
    h, w = mask.shape
    out_w, out_h = size
    out = np.zeros((out_h, out_w), dtype=bool)
    x1, y1, x2, y2 = bbox_of(mask)
    if x2 <= x1:
        return out
    sx, sy = out_w / w, out_h / h
    ox1, oy1 = math.floor(x1 * sx), math.floor(y1 * sy)
    ox2, oy2 = min(out_w, math.ceil(x2 * sx)), min(out_h, math.ceil(y2 * sy))
    # the source region those output pixels cover, cut out whole pixels wide
    bx1, by1, bx2, by2 = ox1 / sx, oy1 / sy, min(w, ox2 / sx), min(h, oy2 / sy)
    cx1, cy1, cx2, cy2 = math.floor(bx1), math.floor(by1), math.ceil(bx2), math.ceil(by2)
    crop = Image.fromarray(mask[cy1:cy2, cx1:cx2].astype(np.uint8) * 255, "L")
    scaled = crop.resize(
        (ox2 - ox1, oy2 - oy1), Image.Resampling.BOX, box=(bx1 - cx1, by1 - cy1, bx2 - cx1, by2 - cy1)
    )
    out[oy1:oy2, ox1:ox2] = np.asarray(scaled) >= 128
    return out


def apply_orientation(mask: np.ndarray, orientation: int) -> np.ndarray:
    """Transform a mask drawn on the stored raster the way EXIF ``orientation`` transforms the image
    (the same operations as ``PIL.ImageOps.exif_transpose``)."""
    ops = {
        1: lambda m: m,
        2: lambda m: m[:, ::-1],
        3: lambda m: m[::-1, ::-1],
        4: lambda m: m[::-1, :],
        5: lambda m: m.T,
        6: lambda m: np.rot90(m, k=-1),
        7: lambda m: m[::-1, ::-1].T,
        8: lambda m: np.rot90(m, k=1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(mask))


def check_rle(rle: RLE) -> None:
    """Raise ``SampleError('bad_rle')`` unless the runs are well-formed and cover exactly h*w pixels.

    pycocotools decodes without bounds checks, so a corrupt ``counts`` string must be caught here
    before any decode (it would write past the mask buffer). The counts string is read the way
    pycocotools reads it (5-bit groups, low bits first; 0x20 continues a value, 0x10 in its last
    group makes it negative; from the fourth value on, each is a delta to the value two before),
    vectorised: an SA-1B photo has ~100 masks of a few hundred characters each.
    """
    c = np.frombuffer(rle.counts.encode("latin-1", "replace"), dtype=np.uint8).astype(np.int64) - 48
    if c.size and not ((c >= 0) & (c < 64)).all():
        bad = rle.counts[int(np.argmax((c < 0) | (c >= 64)))]
        raise SampleError("bad_rle", f"invalid character {bad!r} in counts")
    ends = np.flatnonzero((c & 0x20) == 0)  # the last group of each value
    if c.size and (ends.size == 0 or ends[-1] != c.size - 1):
        raise SampleError("bad_rle", "counts string ends inside a run")
    starts = np.concatenate(([0], ends[:-1] + 1)) if ends.size else ends
    k = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # group index within its value
    if c.size and k.max() > 11:
        raise SampleError("bad_rle", "run length too long")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts) if c.size else c
    x -= np.where(c[ends] & 0x10, np.int64(1) << (5 * (k[ends] + 1)), 0)  # sign-extend
    runs = x.copy()
    for first in (1, 2):  # runs[i] = x[i] + runs[i - 2] from i = 3 on: two running sums
        if runs.size > first:
            runs[first::2] = np.cumsum(x[first::2])
    if (runs < 0).any():
        raise SampleError("bad_rle", "negative run length")
    total, expected = int(runs.sum()), rle.size[0] * rle.size[1]
    if total != expected:
        raise SampleError("bad_rle", f"runs cover {total} pixels, mask has {expected}")
