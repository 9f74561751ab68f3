"""Real folders end to end on the model-free spine: files with odd names each reach the shards under
their own key, every reader of shards takes those keys, and a run folder inside its own input
never becomes input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow


def test_ten_odd_names_reach_the_shards_as_ten_keys(odd_names, odd_names_run, shard_reader):
    samples = shard_reader(odd_names_run)
    assert len(samples) == len(odd_names) == 10
    names = {json.loads(s["json"])["source"]["file_name"] for s in samples.values()}
    assert names == {f"{n.rsplit('/', 1)[-1]}.jpg" for n in odd_names}
    assert {"grâce", "grèce", "a_b", "a", "sub_dir_p"} <= set(samples)
    # non-ASCII member names are written as pax headers and read back by name
    pax = set()
    for shard in (odd_names_run / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            pax |= {m.pax_headers.get("path") for m in tar.getmembers()}
    assert "grâce.src.jpg" in pax


def test_every_shard_reader_takes_the_keys(odd_names_run, shard_reader, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import webdataset as wds
    from datasets import load_from_disk

    from groundedit.evaluation.bench import read_shards
    from groundedit.exporters import export_hf
    from groundedit.formats.rundata import RunData
    from groundedit.train.shards import ShardSource

    keys = set(shard_reader(odd_names_run))
    tars = sorted(str(p) for p in (odd_names_run / "shards").glob("*.tar"))
    assert {s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)} == keys
    assert {s.key for s in RunData(odd_names_run).samples()} == keys
    assert {item.id for item in read_shards(odd_names_run)} == keys
    # training groups members by key: one item per sample, each with its record found (the spine
    # makes no instructions, so each is skipped for that reason, not for a missing member)
    source = ShardSource.from_path(odd_names_run)
    items = [item for i in range(len(source.files)) for item in source.read(i, 0, seed=0)]
    assert [getattr(item, "reason", None) for item in items] == ["instruction_missing"] * len(keys)
    export_hf(RunData(odd_names_run), tmp_path / "hf")
    assert set(load_from_disk(str(tmp_path / "hf"))["key"]) == keys


def test_a_run_inside_its_input_never_reads_itself_on_resume(
    sa1b_input, spine_stages, run_pipeline, tmp_path
):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(sa1b_input, photos)
    out = photos / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
        first = run_pipeline(photos, out)
        first_keys = _keys(out)
        second = run_pipeline(photos, out)
    assert list((out / "data" / "render").glob("*.tar")), "the run wrote tars of photos inside its input"

    def counts(summary):
        return {name: (s.rows_in, s.kept, s.rejected) for name, s in summary.stages.items()}

    assert counts(second) == counts(first) and first.stages["ingest"].rows_in == 12
    assert second.stages["ingest"].units_ran == 0, "nothing new to ingest"
    kept, rejected = _keys(out)
    assert (kept, rejected) == first_keys
    assert sorted(kept + rejected) == sorted(f"sa_{i}" for i in range(1, 13)), "only the input's photos"


def _keys(out: Path) -> tuple[list[str], list[str]]:
    """Keys in the shards and in rejected.parquet."""
    kept = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            kept += sorted({m.name.split(".")[0] for m in tar.getmembers()})
    rejected = (
        pq.read_table(out / "rejected.parquet").column("key").to_pylist()
        if (out / "rejected.parquet").exists()
        else []
    )
    return kept, sorted(rejected)
