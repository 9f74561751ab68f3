"""Tiny perception models, written once per test session and loaded through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.perception import TINY_GROUNDING, Grounder, Tagger, write_tiny_perception


def synthetic_images() -> list[np.ndarray]:
    """Three RGB images of different sizes: noise, coloured rectangles, flat grey."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    shapes = np.full((40, 56, 3), 30, dtype=np.uint8)
    shapes[5:25, 8:30] = (220, 40, 40)
    shapes[18:38, 30:52] = (40, 200, 60)
    grey = np.full((30, 50, 3), 128, dtype=np.uint8)
    return [noise, shapes, grey]


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return synthetic_images()


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory):
    return write_tiny_perception(tmp_path_factory.mktemp("perception") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tagger(tiny_paths) -> Tagger:
    p = tiny_paths
    return Tagger.from_pretrained(
        p["ram_checkpoint"], p["ram_tags"], p["ram_thresholds"], config=p["ram_config"], device="cpu"
    )


@pytest.fixture(scope="session")
def grounder(tiny_paths) -> Grounder:
    return Grounder.from_pretrained(
        tiny_paths["grounding_dino"], tiny_paths["sam"], device="cpu", **TINY_GROUNDING
    )


@pytest.fixture(scope="session")
def image_tags(tagger, images) -> list[list[str]]:
    return [[t for t, _ in tags] for tags in tagger.tag(images)]


@pytest.fixture(scope="session")
def grounded(grounder, images, image_tags):
    return grounder.ground(images, image_tags)
