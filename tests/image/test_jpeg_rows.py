"""Re-encoding a band of MCU rows gives the bytes of a full encode; anything else is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from groundedit.image.codec import encode_jpeg, encode_jpeg_rows
from groundedit.image.jpeg_rows import NotSpliceable, band_rows, replace_band


def _photo(rng, h, w):
    """Smooth colour fields plus noise: real JPEG work (not flat blocks that code to nothing)."""
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    return np.clip(big + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(12))
def test_a_band_spliced_into_the_base_is_byte_for_byte_a_full_encode(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(17, 300)), int(rng.integers(17, 300))
    before = _photo(rng, h, w)
    y0 = int(rng.integers(0, h))
    y1 = int(rng.integers(y0 + 1, h + 1))
    after = before.copy()
    after[y0:y1, int(rng.integers(0, w)) :] = rng.integers(0, 256, 3, dtype=np.uint8)
    top, bottom = band_rows(y0, y1, h)
    assert top <= y0 and bottom >= y1 and top % 16 == 0 and (bottom % 16 == 0 or bottom == h)
    spliced = encode_jpeg_rows(encode_jpeg(before), after[top:bottom], top)
    assert spliced == encode_jpeg(after)
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(spliced))), np.asarray(Image.open(io.BytesIO(encode_jpeg(after))))
    )


def test_band_rows_cover_whole_mcu_rows_and_clip_to_the_image():
    assert band_rows(0, 1, 100) == (0, 16)
    assert band_rows(15.5, 16.2, 100) == (0, 32)
    assert band_rows(90, 200, 100) == (80, 100)
    assert band_rows(-5, 3, 100) == (0, 16)
    assert band_rows(40, 40, 100) == (0, 0)
    assert encode_jpeg_rows(b"base", np.zeros((0, 8, 3), np.uint8), 0) == b"base"


def _save(rgb, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "base_options",
    [
        {"quality": 95},  # no restart markers
        {"quality": 95, "restart_marker_rows": 1, "subsampling": "4:4:4"},
        {"quality": 95, "restart_marker_rows": 1, "progressive": True},
        {"quality": 80, "restart_marker_rows": 1, "subsampling": "4:2:0"},  # other tables
        {"quality": 95, "restart_marker_rows": 2, "subsampling": "4:2:0"},
    ],
)
def test_a_base_not_written_by_encode_jpeg_is_refused(base_options):
    rgb = _photo(np.random.default_rng(0), 64, 48)
    with pytest.raises(NotSpliceable):
        encode_jpeg_rows(_save(rgb, **base_options), rgb[16:32], 16)


def test_a_band_that_does_not_fit_is_refused():
    rgb = _photo(np.random.default_rng(1), 64, 48)
    base = encode_jpeg(rgb)
    with pytest.raises(NotSpliceable):  # other width
        encode_jpeg_rows(base, rgb[16:32, :40], 16)
    with pytest.raises(NotSpliceable):  # not on an MCU row
        encode_jpeg_rows(base, rgb[8:24], 8)
    with pytest.raises(NotSpliceable):  # past the last row
        encode_jpeg_rows(base, np.concatenate([rgb[48:], rgb[:16]]), 48)
    with pytest.raises(NotSpliceable):  # a partial MCU row above the last one
        encode_jpeg_rows(base, rgb[16:40], 16)
    with pytest.raises(NotSpliceable):
        replace_band(b"not a jpeg", base, 0)


def test_mask_png_is_a_1_bit_png_any_reader_opens():
    from groundedit.image.codec import encode_mask_png

    rng = np.random.default_rng(3)
    for h, w in ((1, 1), (7, 9), (33, 130), (240, 321)):
        mask = rng.random((h, w)) < 0.3
        im = Image.open(io.BytesIO(encode_mask_png(mask)))
        assert im.mode == "1" and im.size == (w, h)
        assert np.array_equal(np.asarray(im), mask)
