"""COCO RLE masks: decode, encode, bound, and transform with the image's EXIF orientation."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from groundedit.imaging import SampleError
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
    before any decode (it would write past the mask buffer).
    """
    s = rle.counts
    total = 0
    runs: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                raise SampleError("bad_rle", "counts string ends inside a run")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise SampleError("bad_rle", f"invalid character {s[p]!r} in counts")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise SampleError("bad_rle", "negative run length")
        runs.append(x)
        total += x
    expected = rle.size[0] * rle.size[1]
    if total != expected:
        raise SampleError("bad_rle", f"runs cover {total} pixels, mask has {expected}")
