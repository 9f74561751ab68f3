"""Pair readers, each on a hand-written input of its kind, through the pairs recipe's source stage:
good pairs become samples, every bad row a rejection with its reason, nothing crashes, counts add up."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit.fixtures import jpeg_bytes
from groundedit.formats.bagel_parquet import SCHEMA as BAGEL_SCHEMA
from groundedit.formats.pairs import PairInputError, guess_kind, iter_pair_groups, parse_columns
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import RunFolder
from groundedit.formats.scan import KeyIndex
from groundedit.formats.tar import ArtifactPack, TarWriter
from groundedit.specs import load_spec
from groundedit.stages import UnitIO
from groundedit.stages.pair_ingest import PairIngestStage, is_rescale


def _rgb(seed: int, w: int = 64, h: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(seed: int, w: int = 64, h: int = 48) -> bytes:
    return jpeg_bytes(_rgb(seed, w, h))


def _png(seed: int, w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(seed, w, h)).save(buf, "PNG")
    return buf.getvalue()


def ingest(path: Path, out: Path, kind: str | None = None, columns: dict | None = None):
    """Plan ``path`` and run the source stage over every unit: ``(kept samples, rejected samples)``."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunConfig(
        out=out, input=path, profile="tiny", recipe="pairs", input_kind=kind, columns=columns or {}
    )
    stage = PairIngestStage(load_spec("pair_ingest", "tiny"), ctx)
    kept, rejected = [], []
    for unit, entries in ((u.unit, u.entries()) for u in stage.plan(KeyIndex())):
        pack = ArtifactPack(out, f"data/pair_ingest/{unit}.tar")
        for s in stage.process_batch(entries, UnitIO(unit=unit, out=out, artifacts=pack)):
            (rejected if s.rejection else kept).append(s)
        pack.commit()
    return kept, rejected


def reasons(rejected) -> dict[str, str]:
    return {s.key: s.rejection.reason for s in rejected}


# --- JSONL -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jsonl_input(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("jsonl")
    (d / "img").mkdir()
    files = {
        "a.jpg": _jpeg(1),
        "a_edit.jpg": _jpeg(2),
        "b.png": _png(3),
        "b_big.jpg": _jpeg(4, 128, 96),  # a pure rescale of b
        "c.jpg": _jpeg(5),
        "c_crop.jpg": _jpeg(6, 64, 40),  # not a rescale
        "broken.jpg": _jpeg(7)[:200],
        "notimage.jpg": b"hello",
    }
    for name, data in files.items():
        (d / "img" / name).write_bytes(data)
    lines = [
        {
            "id": "good",
            "source": "img/a.jpg",
            "target": "img/a_edit.jpg",
            "instruction": "Make it red.",
            "x": 1,
        },
        {"source": "img/b.png", "target": "img/b_big.jpg", "instruction": ["", "Rescaled one."]},
        {"id": "crop", "source": "img/c.jpg", "target": "img/c_crop.jpg", "instruction": "Crop."},
        {"id": "noinstr", "source": "img/a.jpg", "target": "img/a_edit.jpg", "instruction": "  "},
        {"id": "gone", "source": "img/nothere.jpg", "target": "img/a_edit.jpg", "instruction": "x"},
        {"id": "trunc", "source": "img/a.jpg", "target": "img/broken.jpg", "instruction": "x"},
        {"id": "garbage", "source": "img/notimage.jpg", "target": "img/a.jpg", "instruction": "x"},
        {"id": "notarget", "source": "img/a.jpg", "instruction": "x"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n[1, 2]\n\n"
    (d / "pairs.jsonl").write_text(text)
    return d


def test_jsonl_reader(jsonl_input, tmp_path):
    assert guess_kind(jsonl_input) == "jsonl" and guess_kind(jsonl_input / "pairs.jsonl") == "jsonl"
    kept, rejected = ingest(jsonl_input, tmp_path)
    assert [s.key for s in kept] == ["good", "pairs_000002"]
    good, rescaled = kept
    assert good.instructions.original == "Make it red." and good.pair.origin == "pairs.jsonl:1"
    assert not good.pair.rescaled and good.source.dataset == "pairs" and good.pair.kind == "jsonl"
    assert rescaled.pair.rescaled and rescaled.pair.target_size == (128, 96)
    assert (rescaled.source.width, rescaled.source.height) == (64, 48)
    assert rescaled.instructions.original == "Rescaled one."
    assert reasons(rejected) == {
        "crop": "size_mismatch",
        "noinstr": "no_instruction",
        "gone": "image_missing",
        "trunc": "image_truncated",
        "garbage": "not_an_image",
        "notarget": "bad_manifest_line",
        "pairs_000009": "bad_manifest_line",
        "pairs_000010": "bad_manifest_line",
    }
    assert "target" in rejected[[s.key for s in rejected].index("trunc")].rejection.detail
    assert len(kept) + len(rejected) == 10  # every non-blank line is accounted for


def test_rescale_rule():
    assert is_rescale((64, 48), (128, 96)) and is_rescale((640, 427), (1024, 683))
    assert not is_rescale((64, 48), (64, 40)) and not is_rescale((64, 48), (48, 64))


# --- Hugging Face datasets: Parquet and save_to_disk -----------------------------------------------


def _hf_dataset(columns=("source_img", "target_img", "instruction")):
    import datasets

    src, tgt, text = columns
    rows = {
        src: [{"bytes": _jpeg(10 + i), "path": None} for i in range(4)],
        tgt: [{"bytes": _jpeg(20 + i), "path": None} for i in range(4)],
        text: ["Turn it blue.", "", "Add a hat.", "Remove the dog."],
        "img_id": ["100", "101", "102", "103"],
    }
    rows[tgt][2] = {"bytes": b"not an image at all", "path": None}
    features = datasets.Features(
        {
            src: datasets.Image(),
            tgt: datasets.Image(),
            text: datasets.Value("string"),
            "img_id": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def test_hf_parquet_with_magicbrush_names(tmp_path):
    ds = _hf_dataset()
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    assert guess_kind(tmp_path / "data") == "hf"
    kept, rejected = ingest(tmp_path / "data", tmp_path / "run")
    assert [s.key for s in kept] == ["100", "103"]
    assert reasons(rejected) == {"101": "no_instruction", "102": "not_an_image"}
    # the images were copied into the source stage's artifact tar, read by offset from there
    assert kept[0].source.image.member == "100.source" and kept[0].pair.target.member == "100.target"
    assert os.path.isabs(kept[0].source.image.path) and kept[0].pair.kind == "hf"


def test_hf_save_to_disk_with_a_column_mapping(tmp_path):
    import datasets

    ds = _hf_dataset(columns=("src_img", "edited_img", "prompt"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    assert guess_kind(tmp_path / "saved") == "hf"
    with pytest.raises(PairInputError, match="no column for instruction"):
        list(iter_pair_groups(tmp_path / "saved", "hf", {"source": "src_img", "target": "edited_img"}))
    mapping = parse_columns("source=src_img,target=edited_img,instruction=prompt,id=img_id")
    kept, rejected = ingest(tmp_path / "saved", tmp_path / "run", "hf", mapping)
    assert [s.key for s in kept] == ["100", "103"] and len(rejected) == 2
    assert kept[1].instructions.original == "Remove the dog."


def test_omniedit_names_and_lists_of_phrasings(tmp_path):
    import datasets

    rows = {
        "src_img": [{"bytes": _jpeg(1), "path": None}],
        "edited_img": [{"bytes": _jpeg(2), "path": None}],
        "edited_prompt_list": [["Make the sky pink.", "Turn the sky pink."]],
        "omni_edit_id": ["oe-1"],
    }
    features = datasets.Features(
        {
            "src_img": datasets.Image(),
            "edited_img": datasets.Image(),
            "edited_prompt_list": datasets.List(datasets.Value("string")),
            "omni_edit_id": datasets.Value("string"),
        }
    )
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "omni.parquet"))
    kept, rejected = ingest(tmp_path / "omni.parquet", tmp_path / "run")
    assert not rejected and kept[0].key == "oe-1" and kept[0].instructions.original == "Make the sky pink."


def test_column_errors():
    with pytest.raises(PairInputError, match="not ROLE=COLUMN"):
        parse_columns("source")
    with pytest.raises(PairInputError, match="unknown role 'mask'"):
        parse_columns("mask=mask_img")


# --- Bagel edit parquet ----------------------------------------------------------------------------


def test_bagel_parquet_official_layout(tmp_path):
    """As Bagel's docs describe it: image_list of encoded images, instruction_list with one list of
    phrasings per step; a row with a step too many is rejected, never a crash."""
    rows = {
        "image_list": [
            [_jpeg(1), _jpeg(2), _jpeg(3)],  # two steps: two pairs
            [_jpeg(4), _jpeg(5)],
            [_jpeg(6), _jpeg(7)],  # two steps named, one image short
        ],
        "instruction_list": [
            [["Add a cat.", "Put a cat in."], ["Make the cat black."]],
            [[]],
            [["One."], ["Two."]],
        ],
    }
    table = pa.table(rows, schema=BAGEL_SCHEMA)
    (tmp_path / "edit").mkdir()
    pq.write_table(table, tmp_path / "edit" / "chunk_0.parquet", row_group_size=2)
    (tmp_path / "edit" / "parquet_info.json").write_text("{}")
    assert guess_kind(tmp_path / "edit") == "bagel-parquet"
    kept, rejected = ingest(tmp_path / "edit", tmp_path / "run")
    assert [s.key for s in kept] == ["chunk_0_000000_00", "chunk_0_000000_01", "chunk_0_000002_00"]
    assert [s.instructions.original for s in kept] == ["Add a cat.", "Make the cat black.", "One."]
    assert reasons(rejected) == {
        "chunk_0_000001_00": "no_instruction",
        "chunk_0_000002_01": "bagel_row_invalid",
    }
    # consecutive steps share an image: step 0's target is step 1's source
    from groundedit.formats.tar import read_blob

    assert read_blob(kept[0].pair.target) == read_blob(kept[1].source.image) == _jpeg(2)


# --- our own shards ---------------------------------------------------------------------------------


def test_our_shards_are_read_again(tmp_path):
    shards = RunFolder(tmp_path / "run").shards
    shards.mkdir(parents=True)
    w = TarWriter(shards / "groundedit-000000.tar")
    record = {"key": "k1", "instructions": {"original": "Paint the cup green.", "rewritten": "Green cup."}}
    for name, data in [
        ("k1.src.jpg", _jpeg(1)),
        ("k1.edited.jpg", _jpeg(2)),
        ("k1.json", json.dumps(record).encode()),
    ]:
        w.add(name, data)
    w.add("k2.src.jpg", _jpeg(3))  # no edited image
    w.add("k3.src.jpg", _jpeg(4))
    w.add("k3.edited.jpg", _jpeg(5))
    w.add("k3.json", b"{broken")
    w.close()
    assert guess_kind(shards) == guess_kind(tmp_path / "run") == "shards"
    kept, rejected = ingest(shards, tmp_path / "out", "shards")
    assert [s.key for s in kept] == ["k1"] and kept[0].instructions.original == "Paint the cup green."
    assert reasons(rejected) == {"k2": "image_missing", "k3": "bad_record"}


def test_unknown_inputs_say_what_to_do(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PairInputError, match="--input-kind"):
        guess_kind(tmp_path)
    with pytest.raises(PairInputError, match="--input-kind"):
        guess_kind(tmp_path / "notes.txt")
    with pytest.raises(PairInputError, match="unknown input kind"):
        list(iter_pair_groups(tmp_path, "csv"))
