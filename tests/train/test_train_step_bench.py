"""The training-step benchmark's FLOP count (its MFU's numerator) against torch's FLOP counter, at smoke size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_flops_are_what_the_forward_multiplies(bench):
    """Every matrix product of ``Bagel.forward`` on the benchmark's own InterCoG pack, counted by torch
    (attention kernels excepted: CPU SDPA is not counted), equals the benchmark's count exactly."""
    config = bench.bench_config(layers=2, hidden=256, vit_layers=1, vae_ch=32, vocab=4096)
    c, pack = bench.build(config, torch.device("cpu"), 64)
    latents, noise = bench.forward_inputs(c, pack, 0, "flops")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        c.bagel.model(pack.batch, latents=latents, noise=noise)
    parts = bench.matmul_flops(config, pack)
    assert counter.get_total_flops() == sum(parts.values()), (counter.get_flop_counts()["Global"], parts)
    full, lora = bench.count_flops(config, pack, lora=False), bench.count_flops(config, pack, lora=True)
    attention = bench.attention_flops(config, pack)
    assert full == 3 * (sum(parts.values()) + sum(attention.values()))
    assert lora == 2 * (parts["lm"] + parts["latents"] + attention["lm"]) + parts["vit"] + attention["vit"]
