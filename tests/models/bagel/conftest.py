"""Tiny Bagel fixtures: written once per session in the official layout and loaded like the real one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from groundedit.models.bagel import BagelEditor, LoadedBagel, load_bagel, write_tiny_bagel


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny ops on a 2-vCPU VM are dominated by thread hand-offs; one thread is ~20x faster here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_bagel(tmp_path_factory.mktemp("tiny_bagel"), seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_dir) -> LoadedBagel:
    return load_bagel(tiny_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def editor(tiny) -> BagelEditor:
    return BagelEditor(tiny)
