"""Data-parallel training on CPU (torchrun, gloo, FSDP2): two processes give one process's losses, and a
two-process run killed after a checkpoint resumes where it stopped."""

from __future__ import annotations

import json
import signal

import pytest

from groundedit.cli import main
from groundedit.train.logbook import read_metrics
from groundedit.train.objective import MASK_PARTS, TERMS

from .conftest import sample_members, write_shard

pytestmark = pytest.mark.slow

STEPS = 3  # the tiny profile: batch 2, a checkpoint every 2 steps, CFG dropout on


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Eight samples in one shard: with one source and no bad samples, two ranks striping the stream
    draw exactly the samples one process draws, step by step."""
    d = tmp_path_factory.mktemp("dist-data")
    write_shard(d / "shards" / "a.tar", {f"s{i}": sample_members(f"s{i}", seed=i) for i in range(8)})
    return d


def test_two_processes_repeat_one_and_resume_after_a_kill(data, tmp_path, cli):
    args = ["train", "--data", str(data), "--profile", "tiny", "--max-steps", str(STEPS)]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0

    two = [*args, "--out", str(tmp_path / "two"), "--nproc-per-node", "2"]
    crashed = cli(*two, env={"GROUNDEDIT_CRASH_AT": "train:checkpoint-written@1"}, check=False)
    assert crashed.returncode not in (0, -signal.SIGKILL), crashed.stderr[-2000:]  # torchrun reports it
    assert [r["step"] for r in read_metrics(tmp_path / "two")] == [1, 2]
    meta = json.loads((tmp_path / "two" / "checkpoints" / "step-0000002" / "meta.json").read_text())
    assert meta["world_size"] == 2 and len(meta["ranks"]) == 2
    assert (tmp_path / "two" / "checkpoints" / "step-0000002" / "dcp" / ".metadata").is_file()

    cli(*two, "--resume")
    one, two_rows = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two_rows] == list(range(1, STEPS + 1))
    for a, b in zip(one, two_rows, strict=True):
        assert a["samples"] == b["samples"] == 2 and a["tokens"] == b["tokens"]
        for term in ("loss", *TERMS, *MASK_PARTS):
            assert abs(a[term] - b[term]) < 1e-5, (a["step"], term, a[term], b[term])
    assert (tmp_path / "two" / "model" / "ema.safetensors").is_file()
    assert not list((tmp_path / "two").rglob(".*tmp-*")), "no temporary files left behind"
