from __future__ import annotations

import numpy as np
import pytest

from groundedit.image.editing import blend, crop_window, dilate, edit_metrics, feather_alpha


def test_crop_window_grows_and_clamps():
    assert crop_window((40, 50, 60, 90), 200, 100, margin_frac=0.25, min_margin=4) == (30, 40, 70, 100)
    assert crop_window((0, 0, 10, 10), 20, 20, margin_frac=0.0, min_margin=16) == (0, 0, 20, 20)


def test_blend_leaves_outside_identical_and_has_no_seam():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    crop = (20, 10, 70, 60)
    edited = np.full((50, 50, 3), 255, np.uint8)
    out = blend(src, edited, crop, feather=8)
    outside = np.ones((80, 100), bool)
    outside[10:60, 20:70] = False
    assert np.array_equal(out[outside], src[outside]), "bit-identical outside the crop"
    assert (out[10 + 8 : 60 - 8, 20 + 8 : 70 - 8] == 255).all(), "fully edited away from the edges"
    # at the crop edge the result stays within a few levels of the source: no hard step
    edge = np.abs(out[10, 20:70].astype(int) - src[10, 20:70]).max()
    assert edge <= 255 * (0.5 / 8) + 1
    # and the alpha ramps monotonically from the edge inwards
    a = feather_alpha(crop, 100, 80, 8)[:, 25]
    assert np.all(np.diff(a[:8]) > 0) and a[0] < 0.1 and a[8] == 1


def test_feather_skips_image_borders():
    a = feather_alpha((0, 0, 30, 30), 30, 30, 8)
    assert (a == 1).all(), "a crop that is the whole image needs no seam"


def test_dilate_matches_a_brute_force_max_filter():
    rng = np.random.default_rng(1)
    m = rng.random((23, 31)) > 0.97
    for r in (0, 1, 3):
        brute = np.zeros_like(m)
        ys, xs = np.nonzero(m)
        for y, x in zip(ys, xs, strict=True):
            brute[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = True
        assert np.array_equal(dilate(m, r), brute)


def test_ega_and_leakage_on_hand_made_pairs():
    src = np.zeros((10, 10, 3), np.uint8)
    box = (2, 2, 6, 6)  # 16 pixels inside, 84 outside
    edited = src.copy()
    edited[2:6, 2:6] = 100  # all 16 inside
    m = edit_metrics(src, edited, box, threshold=10)
    assert (m.ega, m.change_outside, m.changed_pixels) == (1.0, 0.0, 16)
    assert m.change_inside == pytest.approx(100 / 255)
    edited[0, 0:4] = 50  # 4 outside
    m = edit_metrics(src, edited, box, threshold=10)
    assert m.ega == pytest.approx(16 / 20) and m.change_outside == pytest.approx(4 / 84)
    edited[9, 9] = 5  # below the threshold: not a change
    assert edit_metrics(src, edited, box, threshold=10).changed_pixels == 20
    nothing = edit_metrics(src, src, box, threshold=10)
    assert (nothing.ega, nothing.change_inside, nothing.changed_pixels) == (0.0, 0.0, 0)


def test_region_hint_gives_the_same_numbers():
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    edited = src.copy()
    edited[10:30, 12:40] = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    box = (15, 12, 35, 25)
    assert edit_metrics(src, edited, box, 10) == edit_metrics(src, edited, box, 10, region=(12, 10, 40, 30))
