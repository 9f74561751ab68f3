"""Bench readers: our JSONL, SmartEdit's Reason-Edit folders, our own shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from groundedit.evaluation.bench import BenchError, detect_reader, load_mask, load_rgb, read_bench


def write_png(path, value: int = 0, size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def test_jsonl_items_resolve_paths_against_the_file(tmp_path):
    write_png(tmp_path / "src" / "a.png")
    write_png(tmp_path / "out" / "a.png", 9)
    write_png(tmp_path / "out" / "b.png", 9)
    lines = [
        {"id": "a", "image": "src/a.png", "edited": "out/a.png", "instruction": "x", "box": [1, 2, 10, 12]},
        {"id": "b", "image": "src/a.png", "instruction": "y", "mask": "src/a.png", "edit_type": "add"},
    ]
    (tmp_path / "bench.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert detect_reader(tmp_path / "bench.jsonl") == "jsonl"
    a, b = read_bench(tmp_path / "bench.jsonl", edited=tmp_path / "out")
    assert a.source == tmp_path / "src" / "a.png" and a.box == (1, 2, 10, 12) and a.edit_type is None
    assert b.edited == tmp_path / "out" / "b.png", "found by id in --edited"
    assert b.mask == tmp_path / "src" / "a.png" and b.edit_type == "add"
    assert load_rgb(a.edited).shape == (24, 32, 3) and not load_mask(b.mask).any()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bench.jsonl:1: not JSON"),
        ('{"image": "a.png", "edited": "b.png"}', "needs at least 'image' and 'instruction'"),
        ('{"image": "a.png", "edited": "b.png", "instruction": "x"}', "needs a target"),
        ('{"image": "a.png", "edited": "b.png", "instruction": "x", "box": [5, 5, 5, 9]}', "x2 > x1"),
        ('{"image": "a.png", "edited": "b.png", "instruction": "x", "box": ["a", 1, 2, 3]}', "'box' must be"),
        ('{"image": "a.png", "instruction": "x", "box": [0, 0, 4, 4]}', "no --edited DIR"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    (tmp_path / "bench.jsonl").write_text(line + "\n")
    with pytest.raises(BenchError, match=message):
        list(read_bench(tmp_path / "bench.jsonl"))


def smartedit_folder(root, names=("0", "1")):
    cat = root / "6-Reasoning"
    for i, n in enumerate(names):
        write_png(cat / f"{n}.png", 10 * i)
        Image.fromarray(np.full((24, 32), 255, np.uint8)).save(cat / f"{n}_mask.jpg")
    (cat / "Reason_test.txt").write_text(
        "".join(f"Change the thing {n} CLIP: a photo of thing {n}\n" for n in names)
    )
    return cat


def test_smartedit_layout_pairs_in_sorted_order_or_by_name(tmp_path):
    smartedit_folder(tmp_path / "bench")
    write_png(tmp_path / "edited" / "6-Reasoning" / "0.png")
    write_png(tmp_path / "edited" / "6-Reasoning" / "1.png")
    items = list(read_bench(tmp_path / "bench", edited=tmp_path / "edited"))
    assert detect_reader(tmp_path / "bench") == "smartedit"
    assert [i.id for i in items] == ["6-Reasoning/0", "6-Reasoning/1"]
    assert items[1].instruction == "Change the thing 1" and items[1].clip_text == "a photo of thing 1"
    assert items[0].edit_type == "6-Reasoning" and items[0].mask.name == "0_mask.jpg"
    assert items[1].edited == tmp_path / "edited" / "6-Reasoning" / "1.png"
    # outputs named otherwise pair by sorted order, as SmartEdit's script pairs them
    write_png(tmp_path / "flat" / "out-a.png")
    write_png(tmp_path / "flat" / "out-b.png")
    items = list(read_bench(tmp_path / "bench" / "6-Reasoning", "smartedit", tmp_path / "flat"))
    assert [i.edited.name for i in items] == ["out-a.png", "out-b.png"]


def test_smartedit_mismatches_are_refused(tmp_path):
    cat = smartedit_folder(tmp_path / "bench")
    write_png(tmp_path / "edited" / "x.png")
    with pytest.raises(BenchError, match="1 edited images for 2 originals"):
        list(read_bench(tmp_path / "bench", edited=tmp_path / "edited"))
    with pytest.raises(BenchError, match="needs --edited"):
        read_bench(tmp_path / "bench")
    (cat / "Reason_test.txt").write_text("only one line\n")
    with pytest.raises(BenchError, match="2 images, 2 masks and 1 instruction lines"):
        list(read_bench(tmp_path / "bench", edited=tmp_path / "edited"))
