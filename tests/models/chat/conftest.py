"""Shared fixtures: tiny chat checkpoints built once per session, loaded backends, prompts, images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from groundedit.models.chat import (
    ChatRequest,
    Sampling,
    TransformersChatBackend,
    load_prompt,
    write_tiny_qwen3,
    write_tiny_qwen25_vl,
)
from groundedit.models.chat.tiny import TINY_MAX_PIXELS, TINY_MIN_PIXELS

PROMPTS_DIR = Path(__file__).resolve().parents[3] / "prompts"
TASKS = ("saliency", "instruct", "rewrite", "qc")


@pytest.fixture(scope="session")
def tiny_vl_dir(tmp_path_factory) -> Path:
    return write_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_q3_dir(tmp_path_factory) -> Path:
    return write_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"), seed=0)


@pytest.fixture(scope="session")
def vl_backend(tiny_vl_dir) -> TransformersChatBackend:
    backend = TransformersChatBackend(
        tiny_vl_dir, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, batch_size=4
    )
    backend.setup()
    yield backend
    backend.teardown()


@pytest.fixture(scope="session")
def q3_backend(tiny_q3_dir) -> TransformersChatBackend:
    backend = TransformersChatBackend(tiny_q3_dir, batch_size=4)
    backend.setup()
    yield backend
    backend.teardown()


@pytest.fixture(scope="session")
def templates():
    return {name: load_prompt(name, PROMPTS_DIR) for name in TASKS}


def boxed_scene(width: int = 160, height: int = 120, shift: int = 0) -> Image.Image:
    """A small synthetic photo with a red box drawn around one of two shapes."""
    image = Image.new("RGB", (width, height), (90, 140, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20 + shift, 30, 60 + shift, 70), fill=(240, 220, 40))
    draw.rectangle((90, 40, 140, 100), fill=(30, 160, 60))
    draw.rectangle((86, 36, 144, 104), outline=(255, 0, 0), width=3)
    return image


@pytest.fixture
def scene() -> Image.Image:
    return boxed_scene()


@pytest.fixture
def make_scene():
    return boxed_scene


@pytest.fixture
def make_request():
    """Build a minimal request for protocol-level tests: ``make_request(seed=3, images=[...])``."""

    def make(seed: int = 0, **kwargs) -> ChatRequest:
        return ChatRequest(system="s", user="u", sampling=Sampling(seed=seed), **kwargs)

    return make
