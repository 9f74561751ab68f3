from __future__ import annotations

import numpy as np

from groundedit.image.overlay import draw_box, draw_grounding, draw_mask


def _scene():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    mask = np.zeros((50, 60), bool)
    mask[12:30, 20:41] = True
    return rgb, mask, (20, 12, 41, 30)


def test_overlays_change_nothing_outside_the_box():
    rgb, mask, box = _scene()
    outside = np.ones(mask.shape, bool)
    outside[12:30, 20:41] = False
    for out in (draw_grounding(rgb, mask, box), draw_box(rgb, box), draw_mask(rgb, mask, box)):
        assert np.array_equal(out[outside], rgb[outside])
    assert not np.array_equal(draw_grounding(rgb, mask, box), rgb)


def test_mask_tint_is_half_red():
    rgb, mask, box = _scene()
    out = draw_mask(rgb, mask, box).astype(int)
    expected = (rgb[mask].astype(float) * 0.5 + np.array([255, 0, 0]) * 0.5 + 0.5).astype(int)
    assert np.array_equal(out[mask], expected)


def test_box_outline_is_red_and_inside():
    rgb, _, box = _scene()
    out = draw_box(rgb, box, width=2)
    assert (out[12, 20:41] == [255, 0, 0]).all() and (out[29, 20:41] == [255, 0, 0]).all()
    assert (out[12:30, 40] == [255, 0, 0]).all()
    assert np.array_equal(out[15:27, 23:38], rgb[15:27, 23:38])
