"""Scoring items end to end: results for every item, reasons for what was not computed, tables."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from groundedit.evaluation import BenchItem, EvalOptions, evaluate, read_bench, summarize
from groundedit.evaluation.metrics import PSNR_CAP
from groundedit.evaluation.tables import write_items_csv, write_summary_csv


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


SRC = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def items() -> list[BenchItem]:
    inside = SRC.copy()
    inside[12:28, 22:38] = 0
    # a smooth photo, edited inside the box, returned by the editor at twice the size
    smooth = np.dstack([np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))] * 3)
    smooth_edit = smooth.copy()
    smooth_edit[14:26, 24:36] = 255 - smooth_edit[14:26, 24:36]
    big = np.asarray(Image.fromarray(smooth_edit).resize((128, 96), Image.Resampling.NEAREST))
    common = {"source": png(SRC), "box": (20, 10, 40, 30), "instruction": "x"}
    return [
        BenchItem(id="same", edited=png(SRC), edit_type="color change", **common),
        BenchItem(id="inside", edited=png(inside), edit_type="color change", **common),
        BenchItem(id="bigger", edited=png(big), edit_type="remove", **{**common, "source": png(smooth)}),
        BenchItem(id="broken", edited=b"not an image", edit_type="remove", **common),
        BenchItem(id="missing", edited=None, edit_type="remove", **common),
    ]


def test_every_item_gets_a_result_with_reasons(tmp_path):
    results = {r.id: r for r in evaluate(items(), EvalOptions(size=0))}
    assert list(results) == ["same", "inside", "bigger", "broken", "missing"]
    same, inside, bigger = results["same"], results["inside"], results["bigger"]
    assert same.values["ega"] is None and "ega: undefined, nothing changed" in same.notes
    assert same.values["psnr"] == PSNR_CAP
    assert inside.values["ega"] == 1.0 and inside.values["leakage"] == 0.0
    assert bigger.resized and bigger.values["ega"] == 1.0, "an editor's larger output is resized back"
    assert results["broken"].error.startswith("not_an_image") and results["missing"].error.startswith(
        "edited_missing"
    )
    for r in (same, inside, bigger):
        assert r.values["lpips"] is r.values["clip"] is r.values["es"] is None
        assert {n.split(":")[0] for n in r.notes} >= {"lpips", "clip", "es"}

    rows = summarize(list(results.values()))
    assert [r.edit_type for r in rows] == ["color change", "remove", "overall"]
    overall = rows[-1]
    assert (overall.items, overall.failed, overall.counts["ega"], overall.counts["es"]) == (5, 2, 2, 0)
    assert overall.mean("ega") == 1.0 and overall.mean("es") is None
    write_items_csv(list(results.values()), tmp_path / "samples.csv")
    write_summary_csv(rows, tmp_path / "summary.csv")
    table = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert table[-1]["edit_type"] == "overall" and table[-1]["es"] == "" and table[-1]["n_es"] == "0"
    assert len(list(csv.DictReader((tmp_path / "samples.csv").read_text().splitlines()))) == 5


@pytest.mark.slow
def test_scoring_our_own_shards_agrees_with_the_edit_stage(tiny_run, shard_reader):
    results = list(evaluate(read_bench(tiny_run), EvalOptions()))
    shards = shard_reader(tiny_run)
    assert [r.id for r in results] == list(shards)
    for r in results:
        record = json.loads(shards[r.id]["json"])
        assert r.error is None and r.edit_type == record["edit_type"]
        # the edit stage measured the same edit before JPEG encoding
        assert r.values["ega"] == pytest.approx(record["scores"]["ega"], abs=0.05)
