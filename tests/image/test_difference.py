"""The pixel proposal of an edit's region: CIELAB ΔE, cleanup, components, IoUs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from groundedit.fixtures import jpeg_bytes
from groundedit.image.difference import ChangeParams, box_iou, change_region, delta_e, mask_iou, srgb_to_lab
from groundedit.pairs_fixture import LOCAL_KINDS, clearly_edited, edit_pair, make_pairs


def _decoded(data: bytes, size: tuple[int, int]) -> np.ndarray:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(im if im.size == size else im.resize(size, Image.Resampling.LANCZOS))


def test_lab_of_reference_colours():
    lab = srgb_to_lab(np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], dtype=np.uint8))[0]
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[2], [0, 0, 0], atol=0.05)


def test_delta_e_is_zero_on_equal_images_and_refuses_other_sizes():
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert float(delta_e(a, a).max()) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        delta_e(a, a[:10])


def test_ious():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[0, :2], b[0, 1:3] = True, True
    assert mask_iou(a, b) == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(18, seed=1)


def test_local_edits_are_found_to_within_iou_0_9(pairs):
    ious = []
    for p in pairs:
        if p.kind not in LOCAL_KINDS:
            continue
        src = _decoded(p.source, (320, 240))
        region = change_region(src, _decoded(p.target, (320, 240)))
        ious.append(mask_iou(region.mask, p.truth))
        ys, xs = np.nonzero(p.truth)
        assert (
            region.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            or box_iou(region.box, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)) > 0.9
        )
    assert len(ious) == 12 and min(ious) >= 0.9, ious


def test_a_tint_changes_most_pixels_and_a_reencode_none(pairs):
    for p in pairs:
        region = change_region(_decoded(p.source, (320, 240)), _decoded(p.target, (320, 240)))
        if p.kind == "tint":
            assert region.raw_fraction > 0.5
        elif p.kind == "unchanged":
            assert region.raw_fraction < 0.001 and region.box is None and region.components == 0


def test_speckle_is_not_an_edit():
    rng = np.random.default_rng(2)
    src = rng.integers(100, 110, (120, 160, 3), dtype=np.uint8)
    tgt = src.copy()
    spots = rng.integers(0, 120, 30), rng.integers(0, 160, 30)
    tgt[spots] = 255  # isolated bright pixels: noise, not an edit
    region = change_region(src, tgt, ChangeParams(blur_sigma=0))
    assert region.box is None and region.fraction == 0.0
    tgt[40:70, 50:90] = (20, 200, 20)
    region = change_region(src, tgt, ChangeParams(blur_sigma=0))
    assert region.box == (50, 40, 90, 70) and region.components == 1


def test_real_photo_edits_in_known_regions():
    """Matplotlib's sample photo, recoloured and pasted on in known regions, JPEG-coded; a removal is
    the paste's pair read backwards (a fill of a real photo's region leaves parts of it unchanged,
    so its truth would not be what changed)."""
    import matplotlib.cbook as cbook
    from PIL import ImageDraw

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = np.asarray(Image.open(f).convert("RGB"))
    h, w = rgb.shape[:2]

    def ellipse(cx, cy, rx, ry):
        layer = Image.new("L", (w, h), 0)
        ImageDraw.Draw(layer).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        return np.asarray(layer) > 0

    rng = np.random.default_rng(0)
    src = _decoded(jpeg_bytes(rgb), (w, h))
    for kind, region in [
        ("recolor", ellipse(w * 0.3, h * 0.7, 60, 40)),
        ("recolor", ellipse(w * 0.6, h * 0.3, 50, 70)),
        ("paste", None),
    ]:
        target, truth, _ = edit_pair(rgb, kind, rng, region)
        assert clearly_edited(rgb, target, truth)
        edited = _decoded(jpeg_bytes(target, 88), (w, h))
        assert mask_iou(change_region(src, edited).mask, truth) >= 0.9, kind
        if kind == "paste":
            assert mask_iou(change_region(edited, src).mask, truth) >= 0.9, "remove"
