"""``export --format bagel-parquet`` on a finished tiny run, read back the way official Bagel reads it."""

from __future__ import annotations

import io
import json
import os
import random

import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit.exporters import ExportError, export_bagel_parquet
from groundedit.exporters.bagel import LAYOUTS
from groundedit.formats import bagel_parquet as bp
from groundedit.formats.rundata import RunData

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    to = tmp_path_factory.mktemp("bagel") / "out"
    # small files and row groups so that several of each exist
    summary = export_bagel_parquet(RunData(tiny_run), to, rows_per_file=2, rows_per_group=1)
    return to, summary


def bagel_rows(dataset_info: dict):
    """Rows as official Bagel's loader finds them: list ``data_dir``, keep files ``parquet_info``
    names (keyed by ``os.path.join(data_dir, name)``), read each row group."""
    info = bp.read_parquet_info(dataset_info["parquet_info_path"])
    for name in sorted(os.listdir(dataset_info["data_dir"])):
        path = os.path.join(dataset_info["data_dir"], name)
        if not name.endswith(".parquet") or path not in info:
            continue
        f = pq.ParquetFile(path)
        for rg in range(info[path]):
            yield from f.read_row_group(rg).to_pylist()


def test_both_layouts_hold_every_sample(exported, tiny_run, shard_reader):
    to, summary = exported
    n = len(shard_reader(tiny_run))
    assert n and summary.rows == {"edit": n, "chain": n} and not summary.skipped
    info = json.loads((to / "dataset_info.json").read_text())[bp.DATASET_GROUP]
    for layout in LAYOUTS:
        entry = info[f"groundedit_{layout}"]
        files = sorted((to / layout).glob("*.parquet"))
        assert entry["num_files"] == len(files) == -(-n // 2) and entry["num_total_samples"] == n
        declared = bp.read_parquet_info(entry["parquet_info_path"])
        assert declared == {str(f): pq.ParquetFile(f).metadata.num_row_groups for f in files}
        assert sum(declared.values()) == n, "one row per row group here"
        assert len(list(bagel_rows(entry))) == n


def test_rows_follow_bagels_rules_and_images_decode(exported):
    to, _ = exported
    info = json.loads((to / "dataset_info.json").read_text())[bp.DATASET_GROUP]
    for layout, images in (("edit", 2), ("chain", 3)):
        for row in bagel_rows(info[f"groundedit_{layout}"]):
            assert len(row[bp.IMAGE_LIST]) == images
            assert len(row[bp.INSTRUCTION_LIST]) == len(row[bp.IMAGE_LIST]) - 1
            bp.check_row(row[bp.IMAGE_LIST], row[bp.INSTRUCTION_LIST])
            sizes = {Image.open(io.BytesIO(b)).convert("RGB").size for b in row[bp.IMAGE_LIST]}
            assert len(sizes) == 1, "source, grounded and edited share one size"
            # Bagel's parse_row: pick a start and end image, one instruction alternative per step
            start = random.choice(range(len(row[bp.IMAGE_LIST]) - 1))
            end = random.choice(range(start + 1, min(start + 3, len(row[bp.IMAGE_LIST]))))
            assert all(random.choice(row[bp.INSTRUCTION_LIST][i - 1]) for i in range(start + 1, end + 1))


def test_the_mapping_from_records(exported, tiny_run, shard_reader):
    to, _ = exported
    samples = {json.loads(m["json"])["key"]: m for m in shard_reader(tiny_run).values()}
    by_src = {m["src.jpg"]: json.loads(m["json"]) for m in samples.values()}
    info = json.loads((to / "dataset_info.json").read_text())[bp.DATASET_GROUP]
    for row in bagel_rows(info["groundedit_chain"]):
        rec = by_src[row[bp.IMAGE_LIST][0]]
        members = samples[rec["key"]]
        assert row[bp.IMAGE_LIST][1:] == [members["grounded.jpg"], members["edited.jpg"]]
        first, second = row[bp.INSTRUCTION_LIST]
        cot = rec["cot"]
        assert first[0].startswith(rec["instructions"]["rewritten"])
        assert cot["1_Scene_Description"] in first[0] and cot["2_Target_Localization"] in first[0]
        assert second == [f"{cot['3_Editing_Description']}\n{cot['4_Post_Edit_Description']}"]
    for row in bagel_rows(info["groundedit_edit"]):
        rec = by_src[row[bp.IMAGE_LIST][0]]
        assert row[bp.IMAGE_LIST][1] == samples[rec["key"]]["edited.jpg"]
        ins = rec["instructions"]
        assert row[bp.INSTRUCTION_LIST] == [list(dict.fromkeys([ins["rewritten"], ins["original"]]))]


def test_export_refuses_a_used_folder_and_unknown_layouts(tiny_run, exported, tmp_path):
    to, _ = exported
    with pytest.raises(ExportError, match="not an empty folder"):
        export_bagel_parquet(RunData(tiny_run), to)
    with pytest.raises(ExportError, match="unknown layout"):
        export_bagel_parquet(RunData(tiny_run), tmp_path / "x", layouts=("interleaved",))
