from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from groundedit.image import masks
from groundedit.image.codec import SampleError
from groundedit.records import RLE


def test_encode_decode_bbox_area():
    m = np.zeros((37, 53), bool)
    m[5:20, 7:40] = True
    m[30, 50] = True
    rle = masks.encode(m)
    assert np.array_equal(masks.decode(rle), m)
    assert masks.bbox_xyxy(rle) == masks.bbox_of(m) == (7, 5, 51, 31)
    assert masks.area(rle) == m.sum()
    masks.check_rle(rle)


def test_check_rle_catches_corruption():
    rle = masks.encode(np.eye(6, dtype=bool))
    with pytest.raises(SampleError, match="runs cover"):
        masks.check_rle(RLE(size=(6, 7), counts=rle.counts))
    with pytest.raises(SampleError, match="invalid character"):
        masks.check_rle(RLE(size=(6, 6), counts=rle.counts + "\x7f"))
    with pytest.raises(SampleError):
        masks.check_rle(RLE(size=(6, 6), counts=rle.counts[:-1] + "z"))


def _reference_counts_check(rle: RLE) -> None:
    """pycocotools' counts format read one character at a time: the specification check_rle's
    vectorised reading must agree with."""
    s, total, runs, p = rle.counts, 0, [], 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                raise SampleError("bad_rle", "ends inside a run")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise SampleError("bad_rle", "invalid character")
            x |= (c & 0x1F) << (5 * k)
            more, p, k = bool(c & 0x20), p + 1, k + 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise SampleError("bad_rle", "negative run")
        runs.append(x)
        total += x
    if total != rle.size[0] * rle.size[1]:
        raise SampleError("bad_rle", "runs cover another area")


def test_check_rle_agrees_with_the_format_read_character_by_character():
    rng = np.random.default_rng(0)
    verdicts = set()
    for _ in range(1500):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = np.zeros((h, w), bool)
        m[rng.integers(0, h) :, rng.integers(0, w) :] = True
        m ^= rng.random((h, w)) < rng.choice([0.0, 0.1])
        counts, size = masks.encode(m).counts, (h, w)
        op = rng.integers(0, 5)
        if op == 1 and counts:  # one character replaced
            i = int(rng.integers(0, len(counts)))
            counts = counts[:i] + chr(int(rng.integers(40, 120))) + counts[i + 1 :]
        elif op == 2:  # cut short
            counts = counts[: int(rng.integers(0, len(counts) + 1))]
        elif op == 3:  # one more character
            counts += chr(int(rng.integers(48, 112)))
        elif op == 4:
            size = (h + 1, w)
        rle = RLE(size=size, counts=counts)
        try:
            _reference_counts_check(rle)
            want = "ok"
        except SampleError:
            want = "bad_rle"
        try:
            masks.check_rle(rle)
            got = "ok"
        except SampleError as e:
            got = e.reason
        assert got == want, (size, counts)
        verdicts.add(want)
    assert verdicts == {"ok", "bad_rle"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pil(orientation):
    a = (np.arange(12).reshape(3, 4) * 20).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    assert np.array_equal(masks.apply_orientation(a, orientation), expected)


def test_resize_is_area_coverage_and_matches_a_whole_image_resize():
    yy, xx = np.mgrid[0:300, 0:450]
    ellipse = ((xx - 200) / 120.0) ** 2 + ((yy - 140) / 70.0) ** 2 <= 1
    # integer factor 3: a pixel is set when at least 5 of its 9 source pixels are
    coverage = ellipse.reshape(100, 3, 150, 3).sum(axis=(1, 3))
    assert np.array_equal(masks.resize(ellipse, (150, 100)), coverage >= 5)
    # any factor: the same as scaling the whole mask with PIL's box filter, up to ties at half coverage
    whole = np.asarray(Image.fromarray(ellipse.astype(np.uint8) * 255).resize((131, 87), Image.BOX)) >= 128
    got = masks.resize(ellipse, (131, 87))
    assert (got != whole).sum() <= 2 and got.sum() > 1000
    assert not masks.resize(np.zeros((30, 40), bool), (10, 7)).any()


def test_rle_from_json_rejects_uncompressed():
    with pytest.raises(SampleError) as e:
        masks.rle_from_json({"size": [2, 2], "counts": [1, 2, 1]})
    assert e.value.reason == "bad_rle"
