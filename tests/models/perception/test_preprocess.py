"""Our numpy/PIL preprocessing reproduces the official processors (transformers' PIL backends here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from groundedit.models.perception.preprocess import (
    ImageProcessorSettings,
    dino_batch,
    dino_resize_shape,
    normalise,
    ram_batch,
    read_image_processor_config,
    sam_batch,
    sam_masks_to_image,
)

dino_pil = pytest.importorskip("transformers.models.grounding_dino.image_processing_pil_grounding_dino")
sam_pil = pytest.importorskip("transformers.models.sam.image_processing_pil_sam")


@pytest.fixture(scope="module")
def odd_images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(37, 91, 3), (120, 45, 3), (64, 64, 3)]]


def test_grounding_dino_matches_the_official_processor(odd_images):
    size = {"shortest_edge": 80, "longest_edge": 150}
    official = dino_pil.GroundingDinoImageProcessorPil(size=size)(odd_images, return_tensors="np")
    settings = ImageProcessorSettings(size=size)
    batch, mask = dino_batch(odd_images, settings)
    pixels = settings.to_pixels(batch, mask).numpy()
    assert pixels.shape == official["pixel_values"].shape
    np.testing.assert_allclose(pixels, official["pixel_values"], atol=1e-5)
    np.testing.assert_array_equal(mask, official["pixel_mask"])


@pytest.mark.parametrize(
    ("hw", "expected"), [((480, 640), (800, 1066)), ((1500, 2250), (800, 1200)), ((100, 1000), (133, 1333))]
)
def test_grounding_dino_resize_rule_at_paper_sizes(hw, expected):
    assert dino_resize_shape(*hw, 800, 1333) == expected


def test_sam_matches_the_official_processor(odd_images):
    proc = sam_pil.SamImageProcessorPil(size={"longest_edge": 96}, pad_size={"height": 96, "width": 96})
    official = proc(odd_images, return_tensors="np")
    settings = ImageProcessorSettings(size={"longest_edge": 96}, pad_size={"height": 96, "width": 96})
    batch, valid, resized = sam_batch(odd_images, settings)
    pixels = settings.to_pixels(batch, valid).numpy()
    np.testing.assert_allclose(pixels, official["pixel_values"], atol=1e-5)
    assert [list(s) for s in resized] == official["reshaped_input_sizes"].tolist()

    low_res = torch.randn(len(odd_images), 2, 24, 24, generator=torch.Generator().manual_seed(0))
    sizes = [im.shape[:2] for im in odd_images]
    expected = proc.post_process_masks(
        [m[:, None] for m in low_res], sizes, resized, pad_size={"height": 96, "width": 96}
    )
    for i, im in enumerate(odd_images):
        ours = sam_masks_to_image(low_res[i], (96, 96), resized[i], im.shape[:2])
        np.testing.assert_array_equal(ours, expected[i][:, 0].numpy())


def test_ram_preprocessing_is_bilinear_384_with_imagenet_statistics(odd_images):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = normalise(ram_batch(odd_images[:1], 384), None, 1 / 255, mean, std).numpy()
    resized = np.asarray(
        Image.fromarray(odd_images[0]).resize((384, 384), Image.Resampling.BILINEAR), np.float32
    )
    expected = ((resized / 255 - mean) / std).transpose(2, 0, 1)
    assert pixels.shape == (1, 3, 384, 384)
    np.testing.assert_allclose(pixels[0], expected, atol=1e-5)


def test_processor_settings_are_read_from_saved_processors(tiny_paths):
    dino = ImageProcessorSettings.from_dict(read_image_processor_config(tiny_paths["grounding_dino"]))
    sam = ImageProcessorSettings.from_dict(read_image_processor_config(tiny_paths["sam"]))
    assert dino.size == {"shortest_edge": 96, "longest_edge": 128}
    assert sam.size == {"longest_edge": 64} and sam.pad_size == {"height": 64, "width": 64}
    assert dino.image_mean == (0.485, 0.456, 0.406)
