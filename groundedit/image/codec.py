"""Image decoding and encoding with one error vocabulary.

Every way a file can be unusable maps to a :class:`SampleError` with a stable reason code, which
stages turn into a per-sample rejection instead of a crashed run.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# We enforce our own cap (``max_pixels``) from the header before decoding; PIL's bomb check would
# raise a less specific error first.
Image.MAX_IMAGE_PIXELS = None

JPEG_QUALITY = 95
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# EXIF orientations that swap width and height.
_TRANSPOSING = {5, 6, 7, 8}


class SampleError(Exception):
    """A per-sample failure with a stable ``reason`` code (snake_case) and a human ``detail``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open an encoded image lazily (header only) and check it against the pixel cap."""
    if not data:
        raise SampleError("empty_file", "0 bytes")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise SampleError("not_an_image", str(e)) from e
    except (OSError, SyntaxError, ValueError) as e:
        reason = "image_truncated" if "truncated" in str(e).lower() else "bad_image_header"
        raise SampleError(reason, str(e)) from e
    w, h = im.size
    if w <= 0 or h <= 0:
        raise SampleError("bad_image_header", f"size {w}x{h}")
    if w * h > max_pixels:
        raise SampleError("too_many_pixels", f"{w}x{h} = {w * h} pixels > cap {max_pixels}")
    return im


def exif_orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is not worth rejecting the photo for
        return 1
    return value if 1 <= value <= 8 else 1


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) after applying the EXIF orientation."""
    w, h = im.size
    return (h, w) if exif_orientation(im) in _TRANSPOSING else (w, h)


def fit_within(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` (width, height) scaled down so that its longer side is ``max_side``; unchanged when it
    already fits (or ``max_side`` is None). Images are never scaled up."""
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16-bit scaled down, alpha composited on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")


@contextmanager
def _decoding() -> Iterator[None]:
    """Map what PIL raises while decoding pixels to reason codes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except SampleError:
        raise
    except OSError as e:
        reason = "image_truncated" if "truncated" in str(e) else "image_decode_error"
        raise SampleError(reason, str(e)) from e
    except (SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise SampleError("image_decode_error", str(e)) from e


def check_complete(data: bytes, im: Image.Image) -> None:
    """Raise ``SampleError('image_truncated')`` unless ``data`` (opened as ``im`` by
    :func:`open_image`) holds its image to the end, judged from the file's structure: a JPEG's
    end-of-image marker after its first scan, a PNG's IEND chunk, a WebP's RIFF size. Cheap (a
    search, not a decode), so every file is checked at ingest; data that is complete but corrupt
    shows at the first decode. Other formats are decoded in full."""
    if im.format == "JPEG":
        complete = _jpeg_complete(data)
    elif im.format == "PNG":
        complete = _png_complete(data)
    elif im.format == "WEBP":
        complete = len(data) >= 8 + int.from_bytes(data[4:8], "little")
    else:
        with _decoding():
            im.load()
        return
    if not complete:
        raise SampleError("image_truncated", f"{im.format} data ends before the end of the image")


def _jpeg_complete(data: bytes) -> bool:
    """Walk the marker segments to the first scan (skipping embedded thumbnails), then look for the
    end-of-image marker: inside entropy-coded data 0xFF is always followed by 0x00 or a restart
    marker, so an EOI after the first scan is the image's own, and a cut file has none."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos) >= 0
    return False


def _png_complete(data: bytes) -> bool:
    """Walk the chunks (length, type, data, CRC) to IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return pos + 12 + length <= len(data)
        pos += 12 + length
    return False


def decode_image(data: bytes, max_pixels: int, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode to an 8-bit RGB PIL image, EXIF orientation applied.

    With ``size`` (width, height after orientation, no larger than the image) the result is scaled
    down to exactly that size: a JPEG is first decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
    is still at least that large, then every image is resampled with Lanczos. The same bytes and
    size always give the same pixels.
    """
    im = open_image(data, max_pixels)
    orientation = exif_orientation(im)
    with _decoding():
        if size is not None:
            stored = (size[1], size[0]) if orientation in _TRANSPOSING else size
            if stored != im.size:
                im.draft(None, stored)  # JPEG only; other formats ignore it
        im.load()
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        im = _to_rgb(im)
        if size is not None and im.size != size:
            im = im.resize(size, Image.Resampling.LANCZOS)
    return im


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode to a writable RGB uint8 array (H, W, 3), EXIF orientation applied."""
    return np.array(decode_image(data, max_pixels))


def encode_jpeg(rgb: np.ndarray | Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Encode RGB as baseline JPEG with fixed settings, so equal pixel blocks encode equally, and a
    restart marker after every MCU row, so a band of rows can be re-encoded alone
    (:func:`encode_jpeg_rows`)."""
    im = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=False, restart_marker_rows=1)
    return buf.getvalue()


def encode_jpeg_rows(base: bytes, band: np.ndarray, top: int, quality: int = JPEG_QUALITY) -> bytes:
    """``encode_jpeg(image, quality)`` byte for byte, where ``base`` is ``encode_jpeg`` of an image
    that ``image`` equals outside the rows ``band`` covers, and ``band`` is ``image``'s rows
    ``[top, top + len(band))``, whole MCU rows (:func:`groundedit.image.jpeg_rows.band_rows`). Only the
    band is encoded. A ``base`` or band that does not fit raises
    :class:`~groundedit.image.jpeg_rows.NotSpliceable`."""
    from groundedit.image.jpeg_rows import replace_band

    if len(band) == 0:
        return base
    return replace_band(base, encode_jpeg(band, quality), top)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Encode a boolean mask as a 1-bit greyscale PNG (black / white) that any PNG reader opens.

    Written directly (signature, IHDR, one IDAT of the packed rows with filter 0, IEND): Pillow's
    encoder runs its row filters on every row, ~5x the time of this for a 3.4 MP mask, and filters
    gain nothing on 1-bit masks."""
    h, w = mask.shape
    rows = np.packbits(np.asarray(mask, dtype=bool), axis=1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1 bit, greyscale, deflate, no interlace
    return (
        _PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
    )
