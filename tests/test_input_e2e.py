"""Real folders end to end on the model-free spine: files with odd names each reach the shards under
their own key, every reader of shards takes those keys, and a run folder inside its own input
never becomes input."""

from __future__ import annotations

import json
import tarfile
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from groundedit.fixtures import annotation_json, jpeg_bytes

pytestmark = pytest.mark.slow

# Annotated (SA-1B style), so that the spine has a target for each. Names that an ASCII-only key rule
# merged: accents composed or not, spaces vs underscores, case, folders vs underscores, dots.
ODD_NAMES = [
    "grâce",
    unicodedata.normalize("NFD", "grâce"),
    "grèce",
    "a b",
    "a_b",
    "A",
    "a",
    "sub dir/p",
    "sub_dir_p",
    "photo.v2",
]


def _write_photos(root: Path, names: list[str]) -> None:
    """A photo with one clearly selectable object per name, with its SA-1B annotation beside it."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        canvas = Image.new("RGB", (96, 64), (120, 120, 120))
        ImageDraw.Draw(canvas).rectangle((20 + i, 16, 60 + i, 44), fill=(200, 40, 40))
        rgb = np.asarray(canvas)
        doc = annotation_json(i + 1, f"{name}.jpg", 96, 64, [(rgb == (200, 40, 40)).all(-1)], rng)
        for ann in doc["annotations"]:
            ann["predicted_iou"], ann["stability_score"] = 0.95, 0.95
        path = root / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(rgb))
        path.with_suffix(".json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, spine_stages, run_pipeline):
    photos = tmp_path_factory.mktemp("odd-names")
    _write_photos(photos, ODD_NAMES)
    out = tmp_path_factory.mktemp("odd-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
        run_pipeline(photos, out)
    return out


def test_ten_odd_names_reach_the_shards_as_ten_keys(odd_run, shard_reader):
    samples = shard_reader(odd_run)
    assert len(samples) == len(ODD_NAMES)
    names = {json.loads(s["json"])["source"]["file_name"] for s in samples.values()}
    assert names == {f"{n.rsplit('/', 1)[-1]}.jpg" for n in ODD_NAMES}
    assert {"grâce", "grèce", "a_b", "a", "sub_dir_p"} <= set(samples)
    # non-ASCII member names are written as pax headers and read back by name
    pax = set()
    for shard in (odd_run / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            pax |= {m.pax_headers.get("path") for m in tar.getmembers()}
    assert "grâce.src.jpg" in pax


def test_every_shard_reader_takes_the_keys(odd_run, shard_reader, tmp_path):
    import webdataset as wds

    from groundedit.evaluation.bench import read_shards
    from groundedit.report import build_report
    from groundedit.rundata import RunData
    from groundedit.train.shards import ShardSource

    keys = set(shard_reader(odd_run))
    tars = sorted(str(p) for p in (odd_run / "shards").glob("*.tar"))
    assert {s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)} == keys
    assert {s.key for s in RunData(odd_run).samples()} == keys
    assert {item.id for item in read_shards(odd_run)} == keys
    source = ShardSource.from_path(odd_run)
    assert sum(1 for i in range(len(source.files)) for _ in source.read(i, 0, seed=0)) == len(keys)
    page = build_report(odd_run, tmp_path / "report")
    thumbs = {p.name.split(".")[0] for p in (tmp_path / "report" / "thumbs" / "kept").glob("*.src.jpg")}
    assert thumbs == keys, "one thumbnail per key: none overwrote another"
    assert "grâce.src.jpg" in page.read_text()


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
        return {s: (summary[s]["rows"], summary[s]["kept"], summary[s]["rejected"]) for s in summary}

    assert counts(second) == counts(first) and first["ingest"]["rows"] == 12
    assert second["ingest"]["ran"] == 0, "nothing new to ingest"
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
