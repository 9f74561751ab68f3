"""ingest's downscaling (``max_side``): a phone-sized photo with SA-1B annotations is kept, scaled, and
every later reader of its pixels, masks and sizes agrees on the scaled frame."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.scan import KeyIndex
from groundedit.formats.tar import ArtifactPack, read_blob
from groundedit.image import masks
from groundedit.image.pixels import source_image
from groundedit.specs import load_spec
from groundedit.stages import UnitIO
from groundedit.stages.export import export_record
from groundedit.stages.ingest import IngestStage
from groundedit.stages.render import RenderStage

RED, BLUE = (220, 30, 30), (30, 40, 210)


def _photo(width: int, height: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A flat grey photo with a red rectangle and a blue ellipse, and the mask of each."""
    canvas = Image.new("RGB", (width, height), (120, 120, 120))
    draw = ImageDraw.Draw(canvas)
    rect = (width // 4, height // 4, width // 2, height // 2)
    ellipse = (width * 3 // 5, height // 2, width * 9 // 10, height * 9 // 10)
    draw.rectangle(rect, fill=RED)
    draw.ellipse(ellipse, fill=BLUE)
    rgb = np.asarray(canvas)
    return rgb, [(rgb == RED).all(-1), (rgb == BLUE).all(-1)]


def _write_sa1b(folder, name: str, rgb: np.ndarray, object_masks, orientation: int = 1) -> None:
    """``rgb`` stored as is (the annotation describes the stored raster), shown with ``orientation``."""
    h, w = rgb.shape[:2]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    (folder / f"{name}.jpg").write_bytes(buf.getvalue())
    anns = []
    for k, m in enumerate(object_masks):
        rle = masks.encode(m)
        anns.append(
            {
                "id": k,
                "segmentation": {"size": [h, w], "counts": rle.counts},
                "predicted_iou": 0.95,
                "stability_score": 0.95,
            }
        )
    doc = {"image": {"image_id": 7, "width": w, "height": h, "file_name": f"{name}.jpg"}, "annotations": anns}
    (folder / f"{name}.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("phone")
    _write_sa1b(d, "sa_1", *_photo(4032, 3024))  # a 12 MP phone photo
    _write_sa1b(d, "sa_2", *_photo(2400, 1800), orientation=6)  # stored landscape, shown portrait
    return d


def _ingest(folder, out, profile="tiny", **params):
    spec = load_spec("ingest", profile)
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    stage = IngestStage(spec, RunConfig(out=out, input=folder, seed=0, profile=profile))
    units = stage.plan(KeyIndex())
    return {s.key: s for u in units for s in stage.process_batch(u.entries(), io=None)}


def test_large_photos_are_downscaled_with_their_masks(phone_photos, tmp_path):
    samples = _ingest(phone_photos, tmp_path)
    assert load_spec("ingest", "tiny").params["max_side"] == 1024
    big, rotated = samples["sa_1"], samples["sa_2"]
    assert big.rejection is None and rotated.rejection is None
    assert (big.source.width, big.source.height, big.source.original_size) == (1024, 768, (4032, 3024))
    assert (rotated.source.width, rotated.source.height) == (768, 1024), "EXIF 6: shown portrait"
    assert rotated.source.original_size == (1800, 2400)
    for s in (big, rotated):
        rgb = np.asarray(source_image(s)).astype(int)
        assert rgb.shape == (s.source.height, s.source.width, 3)
        assert len(s.candidates) == 2
        for c, color in zip(s.candidates, (RED, BLUE), strict=True):
            m = masks.decode(c.mask)
            assert m.shape == rgb.shape[:2] and c.area == m.sum() > 0
            assert tuple(c.box_xyxy) == masks.bbox_of(m)
            # the scaled mask lines up with the scaled pixels: its colour inside, grey one pixel around
            inside = rgb[m].mean(0)
            grown = np.zeros_like(m)
            ys, xs = np.nonzero(m)
            for dy, dx in ((-2, 0), (2, 0), (0, -2), (0, 2)):
                grown[np.clip(ys + dy, 0, m.shape[0] - 1), np.clip(xs + dx, 0, m.shape[1] - 1)] = True
            outside = rgb[grown & ~m].mean(0)
            assert np.abs(inside - color).max() < 25, (s.key, inside, color)
            assert np.abs(outside - 120).max() < 40, (s.key, outside)


def test_rendered_and_exported_sizes_describe_src_jpg(phone_photos, tmp_path):
    s = _ingest(phone_photos, tmp_path)["sa_1"]
    s = s.model_copy(update={"target": s.candidates[0]})
    stage = RenderStage(
        load_spec("render", "tiny"), RunConfig(out=tmp_path, input=phone_photos, profile="tiny")
    )
    io_ = UnitIO(unit="u", out=tmp_path, artifacts=ArtifactPack(tmp_path, "data/render/u.tar"))
    (rendered,) = stage.process_batch([s], io_)
    io_.artifacts.commit()
    assert rendered.rejection is None
    src = Image.open(io.BytesIO(read_blob(rendered.artifacts["src.jpg"], tmp_path)))
    mask = Image.open(io.BytesIO(read_blob(rendered.artifacts["mask.png"], tmp_path)))
    assert src.size == mask.size == (1024, 768)
    record = export_record(rendered, ["src.jpg", "json"])
    assert (record.source.width, record.source.height) == src.size
    assert (record.source.original_width, record.source.original_height) == (4032, 3024)
    # the red rectangle covers 1008..2016 x 756..1512 of the 4032 x 3024 photo: a quarter of each side
    assert np.abs(np.array(record.target.box_xyxy) - [256, 192, 512, 384]).max() <= 1
    assert record.target.box_1000 == ((250, 250), (500, 500))


def test_without_max_side_sizes_are_kept_and_the_cap_still_rejects(phone_photos, tmp_path):
    kept = _ingest(phone_photos, tmp_path, profile="paper")["sa_1"]
    assert load_spec("ingest", "paper").params["max_side"] is None
    assert (kept.source.width, kept.source.height, kept.source.original_size) == (4032, 3024, None)
    capped = _ingest(phone_photos, tmp_path, max_pixels=10_000_000)["sa_1"]
    assert capped.rejection.reason == "too_many_pixels", "the file cap applies before any downscaling"


def test_a_truncated_photo_is_rejected_at_ingest(tmp_path):
    """Its header is intact, so only decoding its data shows the cut: ingest does that, cheaply."""
    folder = tmp_path / "in"
    folder.mkdir()
    rgb, object_masks = _photo(320, 240)
    _write_sa1b(folder, "sa_1", rgb, object_masks)
    _write_sa1b(folder, "sa_2", rgb, object_masks)
    data = (folder / "sa_2.jpg").read_bytes()
    (folder / "sa_2.jpg").write_bytes(data[: len(data) * 2 // 3])
    samples = _ingest(folder, tmp_path / "out")
    assert samples["sa_1"].rejection is None and len(samples["sa_1"].candidates) == 2
    cut = samples["sa_2"].rejection
    assert (cut.stage, cut.reason) == ("ingest", "image_truncated")
