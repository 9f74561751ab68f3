"""tag and ground on the tiny models: well-formed tags, candidates that agree with their masks."""

from __future__ import annotations

import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows
from groundedit.image import masks
from groundedit.records import Sample
from groundedit.specs import load_spec
from groundedit.stages.ground import GroundStage
from groundedit.stages.tag import TagStage


@pytest.fixture(scope="module")
def ingested(sa1b_input, tmp_path_factory, run_pipeline):
    out = tmp_path_factory.mktemp("perception")
    run_pipeline(sa1b_input, out, stage="ingest")
    return out, [
        s for p in sorted((out / "data" / "ingest").glob("*-?????.parquet")) for s in read_rows(p, Sample)
    ][:6]


def _stage(cls, out, **params):
    spec = load_spec(cls.name, "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    stage = cls(spec, RunConfig(out=out, input=out, seed=0, profile="tiny"))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def tagged(ingested):
    out, samples = ingested
    return out, _stage(TagStage, out).process_batch(samples, io=None)


def test_tags_are_well_formed(tagged):
    from groundedit.models.perception.tiny import TINY_TAGS, TINY_TAGS_CHINESE

    _, samples = tagged
    for s in samples:
        assert s.rejection is None and s.tags, "the tiny thresholds always pass some tags"
        assert all(t.name in TINY_TAGS and 0 <= t.score <= 1 for t in s.tags)
        assert all(t.name_zh == TINY_TAGS_CHINESE[TINY_TAGS.index(t.name)] for t in s.tags)
        assert [t.score for t in s.tags] == sorted((t.score for t in s.tags), reverse=True)
        assert s.provenance[-1].stage == "tag" and s.provenance[-1].models == ["tiny://ram_plus"]
    assert len({tuple(t.name for t in s.tags) for s in samples}) >= 1


def test_ground_candidates_are_consistent_and_deterministic(tagged):
    out, samples = tagged
    first = _stage(GroundStage, out, sa1b_iou_threshold=None).process_batch(samples, io=None)
    again = _stage(GroundStage, out, sa1b_iou_threshold=None).process_batch(samples, io=None)
    assert [s.candidates for s in first] == [s.candidates for s in again], "deterministic"
    n_grounded = 0
    for s in first:
        tags = {t.name for t in s.tags}
        for c in (c for c in s.candidates if c.source == "grounded-sam"):
            n_grounded += 1
            m = masks.decode(c.mask)
            assert m.shape == (s.source.height, s.source.width), "mask at image size"
            x1, y1, x2, y2 = c.box_xyxy
            assert 0 <= x1 < x2 <= s.source.width and 0 <= y1 < y2 <= s.source.height, "box inside the image"
            assert tuple(c.box_xyxy) == masks.bbox_of(m), "box is the tight bound of the mask"
            assert c.label in tags and c.area == m.sum()
        counts = s.provenance[-1].counts
        assert counts is not None and all(v > 0 for v in counts.values())
        assert all(c.label is None for c in s.candidates if c.source == "sa1b"), "no match, no label"
    assert n_grounded > 0


def test_sa1b_masks_replace_grounded_ones_when_boxes_match(tagged):
    out, samples = tagged
    grounded = _stage(GroundStage, out, sa1b_iou_threshold=1e-6).process_batch(samples, io=None)
    used = 0
    for s in grounded:
        sa1b = {c.mask.counts for c in s.candidates if c.source == "sa1b"}
        gs = [c for c in s.candidates if c.source == "grounded-sam"]
        used += sum(c.mask.counts in sa1b for c in gs)
        # an SA-1B mask a detection took is labelled with (one of) the tags of the detections that took it
        for c in (c for c in s.candidates if c.source == "sa1b"):
            takers = {g.label for g in gs if g.mask.counts == c.mask.counts}
            assert (c.label in takers) if takers else c.label is None
        if gs:
            assert s.provenance[-1].counts.get("sa1b_mask_used", 0) == sum(c.mask.counts in sa1b for c in gs)
    assert used > 0
