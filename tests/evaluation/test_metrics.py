"""Pixel metrics on hand-made pairs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from groundedit.evaluation.metrics import PSNR_CAP, box_of_mask, pixel_metrics, psnr, ssim

BOX = (20, 10, 40, 30)  # 20 x 20 = 400 pixels in a 64 x 48 image


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_identical_images_change_nothing():
    src = photo()
    m = pixel_metrics(src, src.copy(), BOX, size=0)
    assert m.ega is None and m.changed_pixels == 0, "EGA is undefined when nothing changed"
    assert m.leakage == 0.0 and m.psnr == PSNR_CAP and m.ssim == pytest.approx(1.0)


def test_a_change_only_inside_the_box_has_ega_one():
    src = photo()
    edited = src.copy()
    edited[12:28, 22:38] = 255 - edited[12:28, 22:38]
    m = pixel_metrics(src, edited, BOX, size=0)
    assert m.ega == 1.0 and m.leakage == 0.0
    assert m.psnr == PSNR_CAP and m.ssim == pytest.approx(1.0), "the unedited region is untouched"


def test_ega_and_leakage_count_changed_pixels():
    src = np.zeros((48, 64, 3), np.uint8)
    edited = src.copy()
    edited[10:30, 20:40] = 200  # the whole box: 400 pixels
    edited[0:5, 0:20] = 200  # 100 pixels outside
    edited[40:48, 60:64, 1] = 10  # 32 pixels moved by no more than the threshold: not a change
    m = pixel_metrics(src, edited, BOX, change_threshold=24, size=0)
    assert m.changed_pixels == 500
    assert m.ega == pytest.approx(400 / 500)
    assert m.leakage == pytest.approx(100 / (48 * 64 - 400))


def test_psnr_of_a_known_difference():
    a = np.full((16, 16, 3), 0.5)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(a, a) == PSNR_CAP


def test_psnr_on_the_unedited_region_ignores_the_target():
    src = photo()
    edited = src.copy()
    edited[10:30, 20:40] = 0  # inside the target: ignored
    edited[0:48, 0:8] = np.clip(src[0:48, 0:8].astype(int) + 30, 0, 255)  # outside: counted
    m = pixel_metrics(src, edited, BOX, size=0)
    diff = (edited.astype(float) - src) / 255.0
    diff[10:30, 20:40] = 0
    assert m.psnr == pytest.approx(10 * math.log10(1 / np.mean(diff**2)))
    assert m.ssim < 1.0


def test_ssim_of_two_flat_images_is_the_luminance_term():
    a, b = np.full((20, 20, 3), 0.5), np.full((20, 20, 3), 0.6)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1))


def test_ssim_falls_with_noise_and_is_symmetric():
    a = photo(1).astype(float) / 255
    rng = np.random.default_rng(2)
    small = np.clip(a + rng.normal(0, 0.02, a.shape), 0, 1)
    large = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert 1.0 > ssim(a, small) > ssim(a, large)
    assert ssim(a, large) == pytest.approx(ssim(large, a))
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:8, :8], a[:8, :8])


def test_metrics_at_the_smartedit_size_and_a_mask_target():
    src = photo()
    edited = src.copy()
    mask = np.zeros((48, 64), bool)
    mask[12:28, 22:38] = True
    edited[mask] = 0
    native = pixel_metrics(src, edited, box_of_mask(mask), mask=mask, size=0)
    assert box_of_mask(mask) == (22, 12, 38, 28)
    assert native.ega == 1.0 and native.psnr == PSNR_CAP
    resized = pixel_metrics(src, edited, box_of_mask(mask), mask=mask, size=256)
    # bicubic upsampling carries the edit a pixel or two past the mask's edge: finite, but high
    assert resized.ega == 1.0 and 30 < resized.psnr < PSNR_CAP and resized.ssim > 0.99
    assert box_of_mask(np.zeros((4, 4), bool)) is None
