"""`groundedit train` on the shards of both recipes at once: SA-1B edits made here and edits mined
from given pairs train side by side, and metrics.jsonl counts each step's samples per recipe."""

from __future__ import annotations

import pytest

from groundedit.train.logbook import read_metrics
from groundedit.train.spec import load_train_spec
from groundedit.train.trainer import train

pytestmark = pytest.mark.slow


def test_sa1b_and_pairs_shards_train_together(tiny_run, pairs_run, tmp_path):
    spec = load_train_spec("tiny", overrides={"max_steps": 3, "batch_size": 4, "checkpoint_every": 3})
    out = tmp_path / "out"
    train(spec, [str(tiny_run), str(pairs_run)], out)
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(r["recipes"]) <= {"sa1b", "pairs"} and sum(r["recipes"].values()) == r["samples"] == 4
        assert not r["skipped"]
    total = {k: sum(r["recipes"].get(k, 0) for r in rows) for k in ("sa1b", "pairs")}
    assert total["sa1b"] > 0 and total["pairs"] > 0, total
