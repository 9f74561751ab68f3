"""Tiny Bagel fixtures: written once per session in the official layout and loaded like the real one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from groundedit.models.bagel import BagelEditor, LoadedBagel, load_bagel, write_tiny_bagel


@pytest.fixture(autouse=True, scope="module")
def _single_thread(torch_one_thread):
    """Every test module here runs torch on one thread (see ``torch_one_thread``)."""


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_bagel(tmp_path_factory.mktemp("tiny_bagel"), seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_dir) -> LoadedBagel:
    return load_bagel(tiny_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def editor(tiny) -> BagelEditor:
    return BagelEditor(tiny)
