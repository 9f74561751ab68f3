"""Shared image preparation: sizes the Qwen2-VL vision tower accepts, identical for both backends."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from groundedit.models.chat import prepare_image, smart_resize

BOUNDS = [(3136, 1003520), (4 * 784, 16 * 784)]


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (57, 300), (4000, 3000), (30, 30), (10, 20)])
@pytest.mark.parametrize("bounds", BOUNDS)
def test_sizes_are_multiples_of_28_within_budget(size, bounds):
    width, height = size
    h, w = smart_resize(height, width, min_pixels=bounds[0], max_pixels=bounds[1])
    assert h % 28 == 0 and w % 28 == 0 and bounds[0] <= h * w <= bounds[1]


@pytest.mark.parametrize("bounds", BOUNDS)
def test_same_rule_as_the_processor_and_a_fixed_point_of_it(bounds):
    """Equal to the processor's choice wherever that fits the budget; never resized again."""
    for height in (1, 9, 14, 27, 28, 29, 100, 333, 1080, 2250):
        for width in (3, 14, 41, 56, 640, 1500, 3000):
            if max(height, width) / min(height, width) > 200:
                continue
            h, w = smart_resize(height, width, min_pixels=bounds[0], max_pixels=bounds[1])
            theirs = hf_smart_resize(height, width, 28, *bounds)
            if theirs[0] * theirs[1] <= bounds[1]:
                assert (h, w) == theirs
            # Once prepared, the processor's own resize leaves the image alone.
            assert hf_smart_resize(h, w, 28, *bounds) == (h, w)


def test_prepare_converts_and_resizes():
    image = prepare_image(Image.new("RGBA", (300, 200), (255, 0, 0, 128)), 4 * 784, 16 * 784)
    assert image.mode == "RGB" and image.size[0] % 28 == 0 and image.size[1] % 28 == 0
    fitting = Image.new("RGB", (112, 84))
    assert prepare_image(fitting, 4 * 784, 16 * 784).size == (112, 84)


def test_degenerate_images_are_refused():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 5000)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)
