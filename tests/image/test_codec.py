from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from groundedit.image.codec import (
    SampleError,
    check_complete,
    decode_image,
    decode_rgb,
    encode_jpeg,
    encode_mask_png,
    fit_within,
    open_image,
    oriented_size,
)


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG") if mode else Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_errors_have_specific_reasons():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    jpeg = encode_jpeg(rgb)
    cases = {
        b"": "empty_file",
        b"not an image at all": "not_an_image",
        jpeg[:200]: "image_truncated",  # inside the header
        jpeg[: len(jpeg) - 300]: "image_truncated",  # inside the scan data
    }
    for data, reason in cases.items():
        with pytest.raises(SampleError) as e:
            decode_rgb(data, max_pixels=10**6)
        assert e.value.reason == reason
    with pytest.raises(SampleError) as e:
        open_image(jpeg, max_pixels=599)
    assert e.value.reason == "too_many_pixels" and "600" in e.value.detail


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_anywhere_after_its_header_is_truncated(progressive):
    from groundedit.fixtures import synthetic_photo

    rgb, _ = synthetic_photo(np.random.default_rng(1), 320, 240, 4)
    thumb = io.BytesIO()
    Image.fromarray(rgb[:32, :32]).save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    buf = io.BytesIO()
    # an EXIF block whose thumbnail holds its own end-of-image marker before the main image's scan
    Image.fromarray(rgb).save(
        buf, "JPEG", quality=90, progressive=progressive, exif=exif.tobytes() + thumb.getvalue()
    )
    jpeg = buf.getvalue()
    check_complete(jpeg, open_image(jpeg, 10**6))
    check_complete(jpeg + b"trailer after the image", open_image(jpeg, 10**6))
    for cut in (len(jpeg) // 3, len(jpeg) // 2, len(jpeg) - 300, len(jpeg) - 1):
        im = open_image(jpeg[:cut], 10**6)
        assert im.size == (320, 240), "the header alone does not show it"
        with pytest.raises(SampleError) as e:
            check_complete(jpeg[:cut], im)
        assert e.value.reason == "image_truncated"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_cut_png_or_webp_is_truncated(fmt):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    data = buf.getvalue()
    check_complete(data, open_image(data, 10**6))
    for cut in (len(data) // 2, len(data) - 1):
        with pytest.raises(SampleError) as e:
            check_complete(data[:cut], open_image(data[:cut], 10**6))
        # Pillow refuses to open some cut WebP files at all
        assert e.value.reason == "image_truncated" or (fmt, e.value.reason) == ("WEBP", "bad_image_header")


def test_modes_become_rgb():
    grey16 = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    out = decode_rgb(_png(grey16), 100)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 255], [128, 1]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest transparent black → white
    out = decode_rgb(_png(rgba, "RGBA"), 100)
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([10, 20, 30, 200, 100, 50])
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    assert decode_rgb(buf.getvalue(), 100).tolist() == [[[10, 20, 30], [200, 100, 50]]]
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).convert("CMYK").save(buf, "JPEG")
    assert np.abs(decode_rgb(buf.getvalue(), 100).astype(int) - 200).max() < 8


def test_exif_orientation_is_applied():
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", exif=exif.tobytes())
    assert oriented_size(open_image(buf.getvalue(), 1000)) == (10, 20)
    out = decode_rgb(buf.getvalue(), 1000)
    assert out.shape == (20, 10, 3) and out[0, -1, 0] == 255  # top-left went to top-right


def test_fit_within_scales_the_longer_side_down_only():
    assert fit_within((4032, 3024), 1024) == (1024, 768)
    assert fit_within((3024, 4032), 1024) == (768, 1024)
    assert fit_within((800, 600), 1024) == (800, 600) == fit_within((800, 600), None)
    assert fit_within((5000, 3), 1000) == (1000, 1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_to_a_smaller_size(fmt):
    """JPEGs take a reduced DCT scale first, PNGs are resampled directly: both land on the size,
    both keep the picture (left half dark, right half bright), and decoding is repeatable."""
    arr = np.zeros((600, 800, 3), np.uint8)
    arr[:, 400:] = 230
    exif = Image.Exif()
    exif[0x0112] = 6  # shown 600 wide, 800 tall: the dark half on top
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, exif=exif.tobytes())
    out = decode_image(buf.getvalue(), 10**6, size=(150, 200))
    assert out.size == (150, 200) and out.mode == "RGB"
    a = np.asarray(out).astype(int)
    assert a[:95].mean() < 15 and a[105:].mean() > 215
    assert np.array_equal(a, np.asarray(decode_image(buf.getvalue(), 10**6, size=(150, 200))))


def test_mask_png_roundtrip():
    m = np.zeros((7, 9), bool)
    m[2:5, 3:8] = True
    back = np.asarray(Image.open(io.BytesIO(encode_mask_png(m))).convert("L"))
    assert np.array_equal(back == 255, m) and set(np.unique(back)) <= {0, 255}
