"""The pairs recipe end to end (tiny profile): mined regions against the fixture's true regions,
the rejections of global and unchanged pairs, counts that add up, the exported records, and a run
killed mid-way and resumed under both executors exporting what an uninterrupted run exports."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import signal
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit.engine.chain import StageChain
from groundedit.engine.status import run_status
from groundedit.formats.manifest import StageSummary
from groundedit.formats.runconfig import RunConfig
from groundedit.image.difference import mask_iou
from groundedit.pairs_fixture import LOCAL_KINDS, read_truth
from groundedit.specs import load_pipeline

pytestmark = pytest.mark.slow


def _rejected(out) -> dict[str, tuple[str, str]]:
    rows = pq.read_table(out / "rejected.parquet").to_pylist()
    return {r["key"]: (r["stage"], r["reason"]) for r in rows}


def test_mined_masks_match_the_true_regions(pairs_run, pairs_input, shard_reader):
    truth = read_truth(pairs_input / "pairs.jsonl")
    samples = shard_reader(pairs_run)
    local = {k for k, (kind, _) in truth.items() if kind in LOCAL_KINDS}
    assert set(samples) == local, "every local edit is exported (tiny verdicts pass)"
    ious = {}
    for key, members in samples.items():
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"]))) > 0
        ious[key] = mask_iou(mask, truth[key][1])
    assert min(ious.values()) >= 0.9, ious
    rejected = _rejected(pairs_run)
    for key, (kind, _) in truth.items():
        if kind == "tint":
            assert rejected[key] == ("difference", "global_edit")
        elif kind == "unchanged":
            assert rejected[key] == ("difference", "no_change")


def test_records_carry_the_pair_and_its_reasoning(pairs_run, pairs_input, shard_reader):
    truth = read_truth(pairs_input / "pairs.jsonl")
    for key, members in shard_reader(pairs_run).items():
        rec = json.loads(members["json"])
        assert rec["recipe"] == "pairs" and rec["source"]["dataset"] == "pairs"
        pair = rec["pair"]
        assert pair["kind"] == "jsonl" and pair["origin"].startswith("pairs.jsonl:")
        assert pair["rescaled"] == (truth[key][0] == "resized")
        assert pair["region"]["mask_source"] == "difference", "the tiny profile's random SAM never decides"
        assert rec["target"]["candidate_source"] == "mined"
        (x1, y1), (x2, y2) = rec["target"]["box_1000"]
        assert pair["got"]["box_1000"] == rec["target"]["box_1000"]
        assert f"({x1},{y1}),({x2},{y2})" in pair["got"]["target"].replace(" ", "")
        assert rec["cot"] is not None and rec["instructions"]["original"]
        src = Image.open(io.BytesIO(members["src.jpg"]))
        assert Image.open(io.BytesIO(members["edited.jpg"])).size == src.size == (320, 240)
        assert {"src.jpg", "grounded.jpg", "edited.jpg", "mask.png", "json"} <= set(members)


def test_status_adds_up(pairs_run):
    assert RunConfig.load(pairs_run).recipe == "pairs"
    ctx = RunConfig(out=pairs_run, input=pairs_run, profile="tiny", recipe="pairs")
    statuses = {s.stage: s for s in run_status(StageChain(ctx))}
    order = load_pipeline(recipe="pairs")
    assert list(statuses) == order
    assert statuses["pair_ingest"].rows_in == 6
    for prev, name in itertools.pairwise(order):
        s = statuses[name]
        assert s.state.startswith("done")
        assert s.rows_in == statuses[prev].kept, name
        assert s.rows_in == s.kept + sum(s.rejected.values()), name
    exported = StageSummary.load(pairs_run, "export").exported
    assert exported + len(_rejected(pairs_run)) == 6


def _fingerprint(samples: dict) -> dict[str, str]:
    return {k: hashlib.sha256(b"".join(v[m] for m in sorted(v))).hexdigest() for k, v in samples.items()}


def _run(cli, input_dir, out, *extra, env=None, check=True):
    args = ["run", "--recipe", "pairs", "--input", str(input_dir), "--out", str(out), "--profile", "tiny"]
    return cli(*args, *extra, env={"OMP_NUM_THREADS": "1", **(env or {})}, check=check)


@pytest.fixture(scope="module")
def pairs_reference(pairs_input, tmp_path_factory, cli, shard_reader):
    out = tmp_path_factory.mktemp("pairs-reference")
    _run(cli, pairs_input, out, "--executor", "local")
    return out, _fingerprint(shard_reader(out))


@pytest.mark.parametrize(
    ("executor", "point"),
    [("local", "segment:unit-written@2"), ("ray", "run:ticket-done@1")],  # ray: the driver dies
)
def test_killed_and_resumed_exports_what_an_uninterrupted_run_does(
    executor, point, pairs_reference, pairs_input, tmp_path, cli, shard_reader, ray_address
):
    out = tmp_path / "run"
    where = ["--executor", executor] + (["--ray-address", ray_address] if executor == "ray" else [])
    crashed = _run(cli, pairs_input, out, *where, env={"GROUNDEDIT_CRASH_AT": point}, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _run(cli, pairs_input, out, *where)  # the recipe comes back from run.json as well
    assert _fingerprint(shard_reader(out)) == pairs_reference[1]
    assert _rejected(out) == _rejected(pairs_reference[0])
    assert Counter(r for _, r in _rejected(out).values()) == {"global_edit": 1, "no_change": 1}
    assert not list(out.rglob(".*.tmp-*"))


def test_a_pairs_run_exports_reports_and_scores_like_any_run(pairs_run, shard_reader, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_from_disk

    from groundedit.evaluation import EvalOptions, evaluate, read_bench
    from groundedit.exporters import export_bagel_parquet, export_hf
    from groundedit.formats.rundata import RunData
    from groundedit.report import build_report

    shards = shard_reader(pairs_run)
    run = RunData(pairs_run)
    export_hf(run, tmp_path / "hf")
    ds = load_from_disk(str(tmp_path / "hf"))
    assert sorted(ds["key"]) == sorted(shards)
    assert {json.loads(r)["recipe"] for r in ds["record"]} == {"pairs"}
    summary = export_bagel_parquet(run, tmp_path / "bagel")
    assert summary.rows["edit"] == len(shards)
    page = build_report(pairs_run, tmp_path / "report")
    assert page.is_file() and "global_edit" in page.read_text()
    # eval scores the given edits: the mined box holds what changed
    results = list(evaluate(read_bench(pairs_run), EvalOptions()))
    assert [r.id for r in results] == list(shards)
    assert all(r.error is None and r.values["ega"] > 0.9 for r in results)
