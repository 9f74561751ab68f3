"""Thumbnails for the report: small JPEGs written beside the page, decoded cheaply and safely."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

THUMB_SIDE = 320
MAX_PIXELS = 200_000_000  # larger inputs are not thumbnailed (a decompression bomb, or not a photo)


def write_thumb(data: bytes | None, path: Path, side: int = THUMB_SIDE) -> bool:
    """Write a JPEG of at most ``side`` pixels per side from encoded image ``data``; False (and no
    file) when there is nothing to show or the bytes do not decode."""
    if not data:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > MAX_PIXELS:
                return False
            im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale directly
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((side, side))
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, "JPEG", quality=80)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True
