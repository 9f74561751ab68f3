"""The edit stage on tiny Bagel and tiny LaMa: confinement, metrics, rejections, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows
from groundedit.formats.tar import ArtifactPack
from groundedit.image.editing import crop_window, dilate
from groundedit.records import Instructions, Sample
from groundedit.specs import load_pipeline, load_spec
from groundedit.stages import UnitIO
from groundedit.stages.edit import EditStage


@pytest.fixture(scope="module")
def selected(sa1b_input, tmp_path_factory, run_pipeline):
    out = tmp_path_factory.mktemp("edit")
    order = load_pipeline()
    for stage in order[: order.index("select") + 1]:
        run_pipeline(sa1b_input, out, stage=stage)
    samples = [
        s for p in sorted((out / "data" / "select").glob("*-?????.parquet")) for s in read_rows(p, Sample)
    ]
    return out, samples[:6]


@pytest.fixture(scope="module")
def stage(selected):
    out, _ = selected
    st = EditStage(load_spec("edit", "tiny"), RunConfig(out=out, input=out, seed=0, profile="tiny"))
    st.setup()
    return st


def _as(s: Sample, edit_type: str) -> Sample:
    return s.model_copy(
        update={"edit_type": edit_type, "instructions": Instructions(original="x", rewritten="make it blue")}
    )


def test_bagel_edits_change_nothing_outside_the_crop(stage, selected):
    from groundedit.image.pixels import source_image

    _, samples = selected
    batch = [_as(s, "color change") for s in samples[:3]]
    src = {i: np.asarray(source_image(s)) for i, s in enumerate(batch)}
    p = stage.params
    crops = [
        (i, crop_window(s.target.box_xyxy, src[i].shape[1], src[i].shape[0], p.margin_frac, p.min_margin))
        for i, s in enumerate(batch)
    ]
    edited = stage._edit_crops(batch, src, crops)
    for i, (x1, y1, x2, y2) in crops:
        result, window = edited[i]
        assert window == (x1, y1, x2, y2)
        outside = np.ones(src[i].shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(result[outside], src[i][outside])
        assert not np.array_equal(result, src[i])
    again = stage._edit_crops(
        batch[::-1], {0: src[2], 1: src[1], 2: src[0]}, [(2 - i, c) for i, c in crops[::-1]]
    )
    assert all(np.array_equal(edited[i][0], again[2 - i][0]) for i in range(3)), (
        "same edit whatever the batch order"
    )


def test_removal_changes_nothing_outside_the_dilated_mask(stage, selected):
    from groundedit.image import masks
    from groundedit.image.pixels import source_image

    _, samples = selected
    s = _as(samples[0], "remove")
    rgb = np.asarray(source_image(s))
    out, _ = stage._remove(rgb, masks.decode(s.target.mask), s)
    grown = dilate(masks.decode(s.target.mask), stage.params.removal_dilation)
    assert np.array_equal(out[~grown], rgb[~grown]) and not np.array_equal(out[grown], rgb[grown])


def test_metrics_are_recorded_and_thresholds_reject(stage, selected, tmp_path):
    _, samples = selected
    batch = [_as(s, t) for s, t in zip(samples[:4], ["remove", "replace", "add", "remove"], strict=True)]
    io = UnitIO(unit="u", out=tmp_path, artifacts=ArtifactPack(tmp_path, "data/edit/u.tar"))
    results = stage.process_batch(batch, io)
    io.artifacts.commit()
    for r in results:
        assert r.scores.ega is not None and 0 <= r.scores.ega <= 1
        assert r.scores.change_inside > 0
        assert (r.rejection is None) == ("edited.jpg" in r.artifacts)
    strict = EditStage(
        stage.spec.model_copy(update={"params": {**stage.spec.params, "min_ega": 1.0}}), stage.config
    )
    strict.editor, strict.inpainter = stage.editor, stage.inpainter
    rejected = strict.process_batch(batch[1:2], io)[0]
    assert rejected.rejection.reason == "edit_outside_target" and "EGA" in rejected.rejection.detail


def test_feather_wider_than_margin_is_a_spec_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="feather"):
        EditStage.Params(feather=40, min_margin=8)


def test_preflight_names_the_files_missing_from_a_local_bagel_folder(tmp_path):
    from groundedit.formats.runconfig import RunConfig
    from groundedit.models.hub import missing_requirements
    from groundedit.specs import load_spec
    from groundedit.stages.edit import EditStage

    (tmp_path / "llm_config.json").write_text("{}")
    spec = load_spec("edit", "tiny")
    spec = spec.model_copy(update={"models": {**spec.models, "editor": str(tmp_path)}})
    lines = missing_requirements(EditStage(spec, RunConfig(out=tmp_path, input=tmp_path)).requirements())
    assert [line.split(":")[0] for line in lines] == [
        "edit.editor/vit_config.json",
        "edit.editor/ema.safetensors",
        "edit.editor/ae.safetensors",
    ]
    assert all("hf download ByteDance-Seed/BAGEL-7B-MoT --local-dir DIR" in line for line in lines)


def test_edited_jpg_is_the_full_encode_whether_spliced_into_src_jpg_or_not(
    stage, tiny_run, tmp_path, monkeypatch
):
    """edited.jpg re-encodes only the rows the edit window crosses, spliced into the render stage's
    src.jpg: the bytes must be those of a full encode of the edited image, and a sample without a
    usable src.jpg (none, or one written with other settings) gets the full encode."""
    from io import BytesIO

    from PIL import Image as PILImage

    from groundedit.formats.tar import read_blob
    from groundedit.image.pixels import source_image

    rendered = [
        s
        for p in sorted((tiny_run / "data" / "render").glob("*-?????.parquet"))
        for s in read_rows(p, Sample)
    ]
    batch = [_as(s, t) for s, t in zip(rendered[:2], ["color change", "remove"], strict=True)]
    lenient = EditStage(
        stage.spec.model_copy(
            update={"params": {**stage.spec.params, "min_ega": 0.0, "max_change_outside": 1.0}}
        ),
        stage.config,
    )
    lenient.editor, lenient.inpainter = stage.editor, stage.inpainter
    import groundedit.image.codec

    heights: list[int] = []  # rows of every image JPEG-encoded
    real = groundedit.image.codec.encode_jpeg
    monkeypatch.setattr(
        groundedit.image.codec, "encode_jpeg", lambda a, *q: heights.append(len(a)) or real(a, *q)
    )
    monkeypatch.setattr("groundedit.stages.edit.encode_jpeg", groundedit.image.codec.encode_jpeg)
    results, encoded = {}, {}
    for name, samples in {
        "spliced": batch,
        "no src.jpg": [s.model_copy(update={"artifacts": {}}) for s in batch],
    }.items():
        io = UnitIO(unit="u", out=tiny_run, artifacts=ArtifactPack(tmp_path, f"{name}.tar"))
        heights.clear()
        results[name] = lenient.process_batch(samples, io)
        encoded[name] = list(heights)
        io.artifacts.commit()
    full_heights = [s.source.height for s in batch]
    assert encoded["no src.jpg"] == full_heights
    assert encoded["spliced"] and all(h < f for h, f in zip(encoded["spliced"], full_heights, strict=True)), (
        "with src.jpg only the rows of the edit window are encoded"
    )
    for spliced, full in zip(results["spliced"], results["no src.jpg"], strict=True):
        assert spliced.rejection is None and full.rejection is None
        a = read_blob(spliced.artifacts["edited.jpg"], tmp_path)
        b = read_blob(full.artifacts["edited.jpg"], tmp_path)
        assert a == b
        edited = np.asarray(PILImage.open(BytesIO(a)))
        assert not np.array_equal(edited, np.asarray(source_image(spliced)))
