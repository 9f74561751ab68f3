"""Reading a run folder: stage summaries, exported samples, rejected samples."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from groundedit.formats.commits import CommitStore
from groundedit.formats.rundata import RunData, RunDataError
from groundedit.specs import load_pipeline


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunDataError, match="not a run folder"):
        RunData(tmp_path)
    with pytest.raises(RunDataError, match="not a run folder"):
        RunData(tmp_path / "missing")


@pytest.mark.slow
def test_stage_summaries_match_the_manifests(tiny_run):
    run = RunData(tiny_run)
    stages = run.stages()
    assert [s.stage for s in stages] == load_pipeline()
    for s in stages[:-1]:
        units = CommitStore(tiny_run).read_all(s.stage).values()
        rejected = Counter()
        for u in units:
            rejected.update(u.rejected)
        assert (s.rows_in, s.kept, s.rejected) == (
            sum(u.rows_in for u in units),
            sum(u.kept for u in units),
            dict(rejected),
        )
        assert s.devices == ["cpu"] and s.gpu_seconds == 0.0
        assert s.seconds == pytest.approx(sum(u.seconds for u in units), abs=1e-2)
    for a, b in itertools.pairwise(stages):
        assert b.rows_in == a.kept, "each stage takes what the one before kept"
    export = stages[-1]
    assert export.kept == sum(
        json.loads(p.read_text())["samples"] for p in (tiny_run / "shards").glob("*.stats.json")
    )


@pytest.mark.slow
def test_samples_and_rejected_cover_every_input(tiny_run, shard_reader):
    run = RunData(tiny_run)
    shards = shard_reader(tiny_run)
    samples = list(run.samples(members=1))
    assert [s.key for s in samples] == list(shards)
    assert samples[0].members == {m: d for m, d in shards[samples[0].key].items() if m != "json"}
    assert all(not s.members for s in samples[1:]), "only the first sample's bytes were read"
    rejected = list(run.rejected())
    sidecar = pq.read_table(tiny_run / "rejected.parquet").to_pylist()
    assert [(r.key, r.stage, r.reason, r.raw) for r in rejected] == [
        (r["key"], r["stage"], r["reason"], r["raw"]) for r in sidecar
    ]
    assert len(samples) + len(rejected) == run.stages()[0].rows_in == 12
    only_qc = list(run.rejected(lambda stage, reason: stage == "qc"))
    assert [r.key for r in only_qc] == [r.key for r in rejected if r.stage == "qc"]


@pytest.mark.slow
def test_rejected_images_are_read_where_they_exist(tiny_run):
    run = RunData(tiny_run)
    for r in run.rejected():
        has = {name for name in ("src.jpg", "grounded.jpg", "edited.jpg") if run.rejected_image(r, name)}
        assert has == set(r.sample.artifacts) & {"src.jpg", "grounded.jpg", "edited.jpg"}
        assert run.rejected_image(r, "source"), "the fixture's input is still there"
