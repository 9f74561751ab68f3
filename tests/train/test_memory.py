"""Memory at real width on the CPU, each figure in a fresh process (``benchmarks/train_memory.py``): the
plan's activation estimate against the measured peak, and host memory while loading and exporting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_activation_estimate_is_within_a_quarter_of_the_measured_peak(bench):
    """Two real-width layers with activation checkpointing (the training default); one layer without it
    is the benchmark's ``activations --layers 1 --checkpointing 0``."""
    r = bench.in_subprocess("activations", layers=2, checkpointing=1, side=256)
    assert r["tokens"] > 900
    assert abs(r["estimate"] / r["measured"] - 1) < 0.25, r


def test_host_memory_while_loading_and_exporting_stays_near_the_bf16_size(bench, tmp_path):
    """Built on the meta device, loaded straight in bf16, exported one tensor at a time: never a second
    copy (1.2x the bf16 model at most, above what the process held before)."""
    size = bench.write_folder(tmp_path, layers=1, vocab=16384)
    r = bench.in_subprocess("host", folder=tmp_path)
    assert r["loading"] < 1.2 * size and r["exporting"] < 1.2 * size, (r, size)
    assert r["loading"] > 0.9 * size  # the model really is resident: the measurement sees it
    assert (tmp_path / "export" / "ema.safetensors").stat().st_size == (
        tmp_path / "ema.safetensors"
    ).stat().st_size
