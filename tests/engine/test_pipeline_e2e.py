"""End to end on the tiny SA-1B fixture, under both executors: what lands in the shards."""

from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pytest
from PIL import Image

from groundedit.formats.schema import MANIFESTS_DIR
from groundedit.image.editing import crop_window
from groundedit.records import EDIT_TYPES, ExportRecord
from groundedit.specs import load_pipeline, load_spec

from ..conftest import assert_candidates_from_tag_and_ground

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(sa1b_input, tmp_path_factory, run_pipeline, ray_cluster, tiny_run, enforcing_stages):
    """The shared local run and the same run under Ray (same specs: verdicts enforced). Ray: every
    stage at once, at most 1 unit between ingest and the driver.

    Ray Data's window is soft: when no stage has a task running it dispatches one anyway (its
    liveness rule), which happens while the stages' actors start. So this run starts every stage's
    first actor before streaming (``wait_for_min_actors_s``); ingest then takes unit k+1 only after
    unit k has left every stage, the export part included."""
    from ray.data import DataContext

    d = tmp_path_factory.mktemp("run-ray")
    ctx = DataContext.get_current()
    before, ctx.wait_for_min_actors_s = ctx.wait_for_min_actors_s, 600
    try:
        run_pipeline(sa1b_input, d, executor="ray", stages=enforcing_stages, window=1)
    finally:
        ctx.wait_for_min_actors_s = before
    return {"local": tiny_run, "ray": d}


def test_ray_streams_export_writes_a_shard_before_ingest_finishes(runs):
    """From the records the workers wrote (not from timing): export wrote the samples of the first
    shard (its part of the shard's first unit) before ingest committed its last unit, and the
    driver then cut that shard from them."""
    from groundedit.formats.commits import CommitStore
    from groundedit.formats.shards import read_shard_stats

    out = runs["ray"]
    ingest = CommitStore(out).read_all("ingest")
    export = CommitStore(out).read_all("export")
    shards = read_shard_stats(out)
    assert len(ingest) >= 3 and shards
    first_key = shards[0].first_key
    (first,) = [c for c in export.values() if any(p.key == first_key for p in c.part_samples)]
    assert first.committed_ns < max(c.committed_ns for c in ingest.values())
    assert sum(c.committed_ns > first.committed_ns for c in ingest.values()) >= 1
    assert shards[0].committed_ns > first.committed_ns, "the shard is cut from that part"


def test_same_shards_under_both_executors(runs):
    names = sorted(p.name for p in (runs["local"] / "shards").glob("*.tar"))
    assert names == sorted(p.name for p in (runs["ray"] / "shards").glob("*.tar"))
    for name in names:
        assert (runs["local"] / "shards" / name).read_bytes() == (runs["ray"] / "shards" / name).read_bytes()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_shards_read_with_webdataset(runs, executor):
    import webdataset as wds

    urls = sorted(str(p) for p in (runs[executor] / "shards").glob("*.tar"))
    assert urls
    rows = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(rows) >= 2
    for row in rows:
        assert {"src.jpg", "grounded.jpg", "edited.jpg", "mask.png", "json"} <= set(row)
        assert row["src.jpg"].size == row["grounded.jpg"].size == row["mask.png"].size
        assert row["json"]["key"] == row["__key__"]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_shards_read_with_hf_datasets(runs, executor, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import load_dataset

    from groundedit.formats.features import shard_features

    urls = sorted(str(p) for p in (runs[executor] / "shards").glob("*.tar"))
    ds = load_dataset(
        "webdataset",
        data_files={"train": urls},
        split="train",
        features=shard_features(),
        cache_dir=str(tmp_path),
    )
    n = sum(json.loads(p.read_text())["samples"] for p in (runs[executor] / "shards").glob("*.stats.json"))
    assert len(ds) == n
    row = ds[0]
    assert row["src.jpg"].size == row["grounded.jpg"].size
    assert row["json"]["target"]["mask"] == "mask.png"


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_records_masks_and_overlays(runs, executor, shard_reader):
    schema = json.loads((MANIFESTS_DIR / "export_record.schema.json").read_text())
    samples = shard_reader(runs[executor])
    for key, members in samples.items():
        doc = json.loads(members["json"])
        jsonschema.validate(doc, schema)
        ExportRecord.model_validate_json(members["json"])
        assert doc["key"] == key and "." not in key
        assert (
            doc["edit_type"] in EDIT_TYPES
            and doc["instructions"]["original"]
            and doc["instructions"]["rewritten"]
        )
        assert list(doc["cot"]) == [
            "1_Scene_Description",
            "2_Target_Localization",
            "3_Editing_Description",
            "4_Post_Edit_Description",
        ]
        assert doc["scores"]["saliency_keep"] == 1, "these runs enforce the verdicts"
        src = np.asarray(Image.open(io.BytesIO(members["src.jpg"])))
        grounded = np.asarray(Image.open(io.BytesIO(members["grounded.jpg"])))
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"]))).astype(bool)
        h, w = mask.shape
        assert src.shape == grounded.shape == (h, w, 3)
        assert (doc["source"]["width"], doc["source"]["height"]) == (w, h)
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = doc["target"]["box_xyxy"]
        assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), (
            "box is the mask's tight bound"
        )
        assert doc["target"]["area"] == mask.sum()
        # JPEG blocks (16 px at 4:2:0) touching the box may differ, plus one pixel of chroma upsampling.
        region = np.zeros((h, w), bool)
        region[
            max(0, y1 // 16 * 16 - 1) : -(-y2 // 16) * 16 + 1,
            max(0, x1 // 16 * 16 - 1) : -(-x2 // 16) * 16 + 1,
        ] = True
        assert np.array_equal(src[~region], grounded[~region]), (
            "grounded.jpg must equal src.jpg outside the box"
        )
        # inside the mask the overlay is red at 50 % opacity
        assert (grounded[mask][:, 0].astype(int) - src[mask][:, 0]).mean() > 20
        # the edit stays inside its crop: the box plus the context margin (and the removal dilation)
        edited = np.asarray(Image.open(io.BytesIO(members["edited.jpg"])))
        p = load_spec("edit", "tiny").params
        cx1, cy1, cx2, cy2 = crop_window(
            (x1, y1, x2, y2), w, h, p["margin_frac"], p["min_margin"] + p["removal_dilation"]
        )
        crop = np.zeros((h, w), bool)
        crop[
            max(0, cy1 // 16 * 16 - 1) : -(-cy2 // 16) * 16 + 1,
            max(0, cx1 // 16 * 16 - 1) : -(-cx2 // 16) * 16 + 1,
        ] = True
        assert np.array_equal(src[~crop], edited[~crop]), "edited.jpg equals src.jpg outside the edit crop"
        assert doc["scores"]["ega"] is not None and doc["scores"]["region_edit_accuracy"] is not None
        assert [p["stage"] for p in doc["provenance"]] == load_pipeline()[:-1]


def test_same_targets_across_executors(runs, shard_reader):
    def targets(d):
        return {k: json.loads(m["json"])["target"] for k, m in shard_reader(d).items()}

    assert targets(runs["local"]) == targets(runs["ray"])


def test_shard_layout_and_stats(runs):
    out = runs["local"]
    shards = sorted((out / "shards").glob("*.tar"))
    assert [p.name for p in shards] == [f"groundedit-{i:06d}.tar" for i in range(len(shards))]
    for p in shards:
        stats = json.loads(p.with_suffix(".stats.json").read_text())
        assert stats["bytes"] == p.stat().st_size
        assert stats["samples"] <= 2  # tiny profile's shard_max_samples
        import tarfile

        with tarfile.open(p) as tar:
            keys = [m.name.split(".")[0] for m in tar.getmembers()]
        runs_of_keys = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
        assert len(runs_of_keys) == len(set(keys)) == stats["samples"], "one key's members are contiguous"


def test_rejected_sidecar_accounts_for_every_input(runs, sa1b_input, shard_reader):
    import pyarrow.parquet as pq

    out = runs["local"]
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    kept = set(shard_reader(out))
    dropped = {r["key"] for r in rejected}
    assert not kept & dropped
    assert len(kept) + len(dropped) == 12
    for r in rejected:
        assert r["stage"] and r["reason"]


@pytest.fixture(scope="module")
def plain_local_run(plain_folder, tmp_path_factory, run_pipeline):
    out = tmp_path_factory.mktemp("plain-run-local")
    run_pipeline(plain_folder, out, executor="local")
    return out


def test_plain_images_get_candidates_from_tag_and_ground(plain_local_run, shard_reader):
    """The local executor; under Ray, tests/engine/executors/test_ray.py's prompt test runs plain
    photos through tag and ground and checks the same."""
    samples = shard_reader(plain_local_run)
    assert samples, "plain photos reach the shards"
    for members in samples.values():
        assert_candidates_from_tag_and_ground(json.loads(members["json"]))


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_unit_commits_carry_their_cost(runs, executor):
    from groundedit.formats.commits import CommitStore

    for name in load_pipeline()[:-1]:
        units = CommitStore(runs[executor]).read_all(name).values()
        assert all(u.device == "cpu" and u.gpu_seconds is None and u.seconds >= 0 for u in units)
        spec = load_spec(name, "tiny")
        charged = [u for u in units if u.setup_seconds > 0]
        if spec.models:  # each worker charges its model loading to the first unit it ran
            assert 1 <= len(charged) <= spec.workers, (name, [u.setup_seconds for u in units])


# Provenance fields that are null by the kind of stage (no prompt, no seed, no sampling), in every run.
NULL_BY_STAGE = {"provenance[].prompt_hash", "provenance[].seed", "provenance[].sampling"}
NULL_BY_RECIPE = {"pair"}  # what an edit pair carries: null in the SA-1B recipe's records


def _null_fields(value, feature, path: str = ""):
    from datasets import List

    if value is None:
        yield path
    elif isinstance(feature, dict):
        for name, sub in feature.items():
            yield from _null_fields(value[name], sub, f"{path}.{name}" if path else name)
    elif isinstance(feature, List):
        for item in value:
            yield from _null_fields(item, feature.feature, f"{path}[]")


def test_two_runs_load_together_with_the_published_features(
    runs, plain_local_run, shard_reader, monkeypatch, tmp_path
):
    """An SA-1B run (targets from SA-1B masks, mostly unlabelled) and a plain-image run (targets
    from Grounded-SAM, labelled) in one ``load_dataset``: every field has one type in both runs."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_dataset

    from groundedit.formats.features import record_features, shard_features

    records = [
        json.loads(m["json"]) for d in (runs["local"], plain_local_run) for m in shard_reader(d).values()
    ]
    assert {r["source"]["dataset"] for r in records} == {"sa1b", "images"}
    assert {r["target"]["candidate_source"] for r in records} == {"sa1b", "grounded-sam"}
    features = record_features()
    for r in records:
        assert set(_null_fields(r, features)) <= NULL_BY_STAGE | NULL_BY_RECIPE, r["key"]
        assert r["recipe"] == "sa1b" and r["pair"] is None
        assert isinstance(r["target"]["label"], str)
    urls = [str(p) for d in (runs["local"], plain_local_run) for p in sorted((d / "shards").glob("*.tar"))]
    ds = load_dataset(
        "webdataset",
        data_files={"train": urls},
        split="train",
        features=shard_features(),
        cache_dir=str(tmp_path),
    )
    assert len(ds) == len(records)
    assert ds.features == shard_features()
    assert ds[0]["src.jpg"].size == ds[0]["mask.png"].size
    assert sorted(r["key"] for r in ds["json"]) == sorted(r["key"] for r in records)
