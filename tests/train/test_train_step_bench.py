"""The training-step benchmark runs end to end at smoke size (full fine-tuning and LoRA) on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMOKE = "--device cpu --layers 1 --hidden 256 --vit-layers 1 --vae-ch 32 --image 64 --vocab 4096 --steps 1"


def test_train_step_benchmark_smoke(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([*SMOKE.split(), "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("full ", "lora "))]
    assert [r[0] for r in rows] == ["full", "lora"]
    assert all(float(r[3]) > 0 for r in rows)  # tokens/s
    assert "official Bagel" in out
