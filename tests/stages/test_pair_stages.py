"""The pairs recipe's stages one by one, with scripted models: each verdict's rejection path and
each choice (which picture SAM segments, when its mask wins), which random tiny models never reach."""

from __future__ import annotations

import json

import numpy as np
import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.scan import KeyIndex
from groundedit.formats.tar import ArtifactPack
from groundedit.image import masks
from groundedit.image.pixels import source_image, target_image
from groundedit.models.chat import load_prompt
from groundedit.pairs_fixture import read_truth, write_pairs_fixture
from groundedit.specs import load_spec
from groundedit.stages import UnitIO
from groundedit.stages.difference import DifferenceStage
from groundedit.stages.localize import LocalizeStage, from_grid
from groundedit.stages.pair_ingest import PairIngestStage
from groundedit.stages.reason import ReasonStage
from groundedit.stages.segment import SegmentStage

from .test_vlm_stages import ScriptedBackend


def _stage(cls, out, **params):
    spec = load_spec(cls.name, "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    return cls(spec, RunConfig(out=out, input=out, seed=0, profile="tiny", recipe="pairs"))


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """The 6 fixture pairs through pair_ingest and difference (keeping the global edit)."""
    d = tmp_path_factory.mktemp("pairs")
    manifest = write_pairs_fixture(d / "in", pairs=6)
    ctx = RunConfig(out=d, input=manifest, profile="tiny", recipe="pairs")
    ingest = PairIngestStage(load_spec("pair_ingest", "tiny"), ctx)
    samples = []
    for unit, entries in ((u.unit, u.entries()) for u in ingest.plan(KeyIndex())):
        samples += ingest.process_batch(entries, UnitIO(unit, d, ArtifactPack(d, f"{unit}.tar")))
    kinds = {k: kind for k, (kind, _) in read_truth(manifest).items()}
    io = UnitIO("difference", d, ArtifactPack(d, "difference.tar"))  # difference writes edited.jpg
    out = _stage(DifferenceStage, d, keep_global=True).process_batch(samples, io)
    return d, {kinds[s.key]: s for s in out}, read_truth(manifest)


def test_difference_keeps_a_global_edit_when_asked(mined):
    _, by_kind, _ = mined
    tint = by_kind["tint"]
    assert tint.rejection is None and tint.pair.global_edit and tint.target.source == "whole-image"
    assert tint.target.box_xyxy == (0, 0, 320, 240)
    assert by_kind["unchanged"].rejection.reason == "no_change"
    assert by_kind["recolor"].target.source == "mined" and by_kind["recolor"].pair.region.components == 1


def _region_reply(box, kind="change"):
    x1, y1, x2, y2 = box
    return json.dumps({"Edit_Kind": kind, "Box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}})


def test_localize_scores_agreement_and_rejects_disagreement(mined):
    d, by_kind, _ = mined
    recolor, paste, tint = by_kind["recolor"], by_kind["paste"], by_kind["tint"]
    x1, y1, x2, y2 = recolor.pair.region.pixel_box
    near = tuple(
        min(999, v) for v in (x1 * 1000 // 320, y1 * 1000 // 240, x2 * 1000 // 320, y2 * 1000 // 240)
    )
    # corners named the wrong way round are the same box; a far box disagrees
    backend = ScriptedBackend(
        script=[_region_reply((near[2], near[3], near[0], near[1])), _region_reply((0, 0, 30, 30), "add")]
    )
    stage = _stage(LocalizeStage, d, min_box_iou=0.5)
    stage.backend, stage.template = backend, load_prompt("localize")
    ok, bad, passed = stage.process_batch([recolor, paste, tint], io=None)
    assert len(backend.requests) == 2, "the global edit is not asked about"
    assert len(backend.requests[0].images) == 2 and backend.requests[0].user.endswith(
        recolor.instructions.original
    )
    assert ok.rejection is None and ok.pair.region.box_iou > 0.9 and ok.pair.region.edit_kind == "change"
    assert ok.target.score == ok.pair.region.box_iou
    assert bad.rejection.reason == "region_disagreement" and bad.pair.region.edit_kind == "add"
    assert passed is tint
    assert from_grid((0, 0, 999, 999), 320, 240) == (0, 0, 320, 240)


class FakeSam:
    """Answers every box with a fixed mask, recording which picture it was shown."""

    def __init__(self, mask):
        self.mask, self.images = mask, []

    def segment(self, images, boxes):
        self.images += images
        return [(self.mask[None], np.ones(1, np.float32)) for _ in images]


def _with_kind(s, kind):
    region = s.pair.region.model_copy(update={"edit_kind": kind})
    return s.model_copy(update={"pair": s.pair.model_copy(update={"region": region})})


def test_segment_picks_the_picture_by_edit_kind_and_uses_sam_where_it_agrees(mined):
    d, by_kind, _ = mined
    paste = by_kind["paste"]
    pixel = masks.decode(paste.pair.region.pixel_mask)
    grown = np.zeros_like(pixel)
    ys, xs = np.nonzero(pixel)
    grown[ys.min() - 2 : ys.max() + 3, xs.min() - 2 : xs.max() + 3] = True  # SAM's box-shaped guess
    stage = _stage(SegmentStage, d, min_sam_iou=0.5, change_dilation=1)
    stage.sam = FakeSam(grown)
    added, changed = stage.process_batch([_with_kind(paste, "add"), _with_kind(paste, "change")], io=None)
    assert np.array_equal(stage.sam.images[0], np.asarray(target_image(paste)))  # an addition: the target
    assert np.array_equal(stage.sam.images[1], np.asarray(source_image(paste)))
    assert added.pair.region.mask_source == "sam" and masks.decode(added.target.mask).sum() == grown.sum()
    cut = masks.decode(changed.target.mask)  # a change: SAM's mask cut to the (dilated) difference
    assert changed.pair.region.mask_source == "sam" and cut.sum() < grown.sum() and (cut <= grown).all()
    stage.sam = FakeSam(np.zeros_like(pixel))
    (fallback,) = stage.process_batch([_with_kind(paste, "remove")], io=None)
    assert fallback.pair.region.mask_source == "difference" and fallback.pair.region.sam_iou == 0.0
    assert masks.decode(fallback.target.mask).sum() == pixel.sum()
    assert fallback.target.box_xyxy == paste.pair.region.pixel_box


def _reasoning(box_text: str, extra: str = "") -> str:
    cot = {
        "1_Scene_Description": "A gradient.",
        "2_Target_Localization": "The shape." + extra,
        "3_Editing_Description": "Recolour it.",
        "4_Post_Edit_Description": "It is red.",
    }
    got = {
        "Scene": "A gradient.",
        "Target": f"the shape {box_text}",
        "Operation": "recolour",
        "Result": "red",
    }
    return json.dumps({"Editing_Type": "color change", "Target_Object": "shape", "CoT": cot, "GoT": got})


def test_reason_validates_the_box_in_the_chain(mined):
    d, by_kind, _ = mined
    s = by_kind["recolor"]
    from groundedit.stages.export import box_1000

    (x1, y1), (x2, y2) = grid = box_1000(tuple(int(v) for v in s.target.box_xyxy), 320, 240)
    right = f"({x1},{y1}),({x2},{y2})"
    backend = ScriptedBackend(
        script=[_reasoning("(1,2),(3,4)"), _reasoning(right, " (5,6),(7,8)"), _reasoning(right)]
    )
    stage = _stage(ReasonStage, d)
    stage.backend, stage.template = backend, load_prompt("reason")
    (done,) = stage.process_batch([s], io=None)
    assert len(backend.requests) == 3, "two wrong boxes were retried"
    assert right in backend.requests[0].user and len(backend.requests[0].images) == 2
    assert done.rejection is None and done.pair.got.box_1000 == grid and right in done.pair.got.text
    assert done.edit_type == "color change" and done.target.label == "shape"
    backend = ScriptedBackend(script=[_reasoning("(1,2),(3,4)")])
    stage.backend = backend
    (failed,) = stage.process_batch([s], io=None)
    assert failed.rejection.stage == "reason" and "box" in failed.rejection.detail
