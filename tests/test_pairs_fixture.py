"""The pairs fixture: deterministic, every kind in turn, manifest paths relative, truths on disk."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from groundedit.pairs_fixture import KINDS, make_pairs, read_truth, write_pairs_fixture


def test_pairs_cycle_the_kinds_and_repeat_with_the_seed(tmp_path):
    a, b = make_pairs(7, seed=4), make_pairs(7, seed=4)
    assert [p.kind for p in a] == [*KINDS, KINDS[0]]
    assert [(p.source, p.target, p.instruction) for p in a] == [
        (p.source, p.target, p.instruction) for p in b
    ]
    assert make_pairs(1, seed=5)[0].source != a[0].source


def test_written_fixture(tmp_path):
    manifest = write_pairs_fixture(tmp_path, pairs=6)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"pair_{i:04d}" for i in range(6)]
    for r in rows:
        assert not r["source"].startswith("/") and (tmp_path / r["source"]).is_file()
        assert r["instruction"]
    truth = read_truth(manifest)
    by_kind = {kind: mask for kind, mask in truth.values()}
    assert by_kind["tint"] is None and by_kind["unchanged"] is None
    recolor = by_kind["recolor"]
    assert recolor.shape == (240, 320) and 0.03 * recolor.size <= recolor.sum() <= 0.25 * recolor.size
    resized = next(r for r in rows if r["truth"]["kind"] == "resized")
    assert Image.open(tmp_path / resized["target"]).size == (480, 360)
    box = next(r for r in rows if r["truth"]["kind"] == "recolor")["truth"]["box"]
    ys, xs = np.nonzero(recolor)
    assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
