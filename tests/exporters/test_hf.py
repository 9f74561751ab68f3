"""``export --format hf``: a datasets folder that load_from_disk opens, with Image features."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from groundedit.exporters import ExportError, export_hf, hf_features
from groundedit.formats.rundata import RunData


@pytest.mark.slow
def test_load_from_disk_gives_every_sample_with_images(tiny_run, shard_reader, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_from_disk

    summary = export_hf(RunData(tiny_run), tmp_path / "hf")
    ds = load_from_disk(str(tmp_path / "hf"))
    shards = shard_reader(tiny_run)
    assert len(ds) == summary.rows["train"] == len(shards)
    state = json.loads((tmp_path / "hf" / "state.json").read_text())
    data_files = sorted(f["filename"] for f in state["_data_files"])
    assert [p.name for p in summary.files] == data_files, "the data files, not the metadata beside them"
    assert ds.features == hf_features()
    for row in ds:
        members = shards[row["key"]]
        assert row["src"].size == Image.open(io.BytesIO(members["src.jpg"])).size
        assert row["edited"].mode == "RGB" and row["mask"].size == row["src"].size
        record = json.loads(row["record"])
        assert record == json.loads(members["json"])
        assert row["box_xyxy"] == record["target"]["box_xyxy"]
        assert row["cot"]["2_Target_Localization"] == record["cot"]["2_Target_Localization"]


def test_a_run_without_shards_has_nothing_to_export(tmp_path):
    from groundedit.formats.runconfig import RunConfig

    RunConfig(out=tmp_path, input="x", profile="tiny", seed=0).save()
    with pytest.raises(ExportError, match="no exported samples"):
        export_hf(RunData(tmp_path), tmp_path / "hf")
    assert not (tmp_path / "hf").exists(), "nothing written when there is nothing to export"
