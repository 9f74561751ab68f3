"""Training fixtures: the tiny spec and components (tiny Bagel + tiny SAM, built once), hand-made examples
and shards in our export format."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groundedit.train.examples import EditExample, Grounding
from groundedit.train.spec import load_train_spec

COT = (
    "A street with cars and people.",
    "the small red car on the left, next to the tree",
    "recolor the car to blue; keep everything else.",
    "the car on the left is now blue.",
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread(torch_one_thread):
    """Every test module here runs torch on one thread (see ``torch_one_thread``)."""


def no_dropout(**more) -> dict:
    """Spec overrides: no CFG dropout (deterministic layouts), plus ``more``."""
    return {"sequence": {"cfg_dropout": {"text": 0.0, "vit": 0.0, "vae": 0.0}}, **more}


@pytest.fixture(scope="session")
def tiny_spec():
    return load_train_spec("tiny", overrides=no_dropout())


@pytest.fixture(scope="session")
def components(tiny_spec):
    """Tiny Bagel, heads, SAM encoder and sequence builder (shared: tests must leave no gradients behind)."""
    from groundedit.train.trainer import build_components

    return build_components(tiny_spec)


def picture(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def grounding_example(key: str = "k0", size=(64, 48), seed: int = 0) -> EditExample:
    """An example with a target mask over the left third of the image."""
    mask = np.zeros((size[1], size[0]), bool)
    mask[size[1] // 4 :, : size[0] // 3] = True
    src = picture(seed, size)
    grounded, edited = picture(seed + 1, size), picture(seed + 2, size)
    return EditExample(key, [src, edited], ["make the car on the left blue"], Grounding(grounded, mask, COT))


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def sample_members(key: str, size=(64, 48), seed: int = 0, **record_changes) -> dict[str, bytes]:
    """The five members of one exported sample (only the record fields training reads, plus a few)."""
    ex = grounding_example(key, size, seed)
    record = {
        "key": key,
        "edit_type": "color change",
        "instructions": {"original": "make the car blue", "rewritten": ex.instructions[0]},
        "cot": dict(
            zip(
                (
                    "1_Scene_Description",
                    "2_Target_Localization",
                    "3_Editing_Description",
                    "4_Post_Edit_Description",
                ),
                COT,
                strict=True,
            )
        ),
    }
    record.update(record_changes)
    return {
        "src.jpg": encode(ex.images[0]),
        "grounded.jpg": encode(ex.grounding.grounded),
        "edited.jpg": encode(ex.images[1]),
        "mask.png": encode(Image.fromarray(ex.grounding.mask.astype(np.uint8) * 255), "PNG"),
        "json": json.dumps(record).encode(),
    }


def write_shard(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    """A WebDataset tar: each sample's members as ``<key>.<member>``, keys in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for name, data in members.items():
                info = tarfile.TarInfo(name if name.startswith("../") else f"{key}.{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path
