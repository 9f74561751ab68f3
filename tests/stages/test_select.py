from __future__ import annotations

from pathlib import Path

import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.records import BlobRef, Candidate, Sample, Source
from groundedit.specs import load_spec
from groundedit.stages.select import SelectStage


def _sample(key: str, n: int = 8) -> Sample:
    import numpy as np

    from groundedit.image import masks

    cands = []
    for i in range(n):
        m = np.zeros((100, 100), bool)
        m[i * 10 : i * 10 + 8, 10 : 10 + 5 * (i + 2)] = True
        cands.append(
            Candidate(
                id=str(i),
                source="sa1b",
                box_xyxy=masks.bbox_of(m),
                mask=masks.encode(m),
                area=int(m.sum()),
                score=0.95,
                predicted_iou=0.95,
                stability_score=0.95,
            )
        )
    src = Source(
        dataset="sa1b", image_id=key, file_name=f"{key}.jpg", width=100, height=100, image=BlobRef(path="/x")
    )
    return Sample(key=key, source=src, candidates=cands)


def _stage(seed: int, **params) -> SelectStage:
    spec = load_spec("select", "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    return SelectStage(spec, RunConfig(out=Path("/tmp"), input=Path("/tmp"), seed=seed))


def _targets(stage, samples, batch_size):
    out = {}
    for i in range(0, len(samples), batch_size):
        for s in stage.process_batch(samples[i : i + batch_size], io=None):
            out[s.key] = s.target.id if s.target else None
    return out


def test_choice_depends_only_on_seed_and_key():
    samples = [_sample(f"img_{i}") for i in range(40)]
    a = _targets(_stage(0), samples, 1)
    assert a == _targets(_stage(0), samples, 7) == _targets(_stage(0), list(reversed(samples)), 40)
    b = _targets(_stage(1), samples, 40)
    assert a != b
    assert len(set(a.values())) > 3  # draws spread over the candidates


def test_thresholds_and_rejection_reason():
    s = _sample("k")
    out = _stage(0, min_area_frac=0.5).process_batch([s], io=None)[0]
    assert out.rejection.reason == "no_eligible_target" and out.candidates == [] and out.num_candidates == 8
    low = s.model_copy(
        update={"candidates": [c.model_copy(update={"predicted_iou": 0.5}) for c in s.candidates]}
    )
    assert _stage(0).process_batch([low], io=None)[0].rejection.reason == "no_eligible_target"
    ok = _stage(0).process_batch([s], io=None)[0]
    assert ok.rejection is None and ok.target.box_xyxy == tuple(ok.target.box_xyxy)
    assert ok.provenance[-1].stage == "select" and ok.provenance[-1].seed == 0


@pytest.mark.parametrize("source", ["sa1b", "grounded-sam"])
def test_sources_filter(source):
    s = _sample("k")
    out = _stage(0, sources=[source]).process_batch([s], io=None)[0]
    assert (out.rejection is None) == (source == "sa1b")


def test_source_priority_falls_back_to_the_next_source():
    s = _sample("k")
    grounded = [c.model_copy(update={"source": "grounded-sam", "id": f"g{c.id}"}) for c in s.candidates]
    both = s.model_copy(update={"candidates": s.candidates + grounded})
    stage = _stage(0, sources=["sa1b", "grounded-sam"], source_priority=True)
    assert stage.process_batch([both], io=None)[0].target.source == "sa1b"
    only_grounded = s.model_copy(update={"candidates": grounded})
    assert stage.process_batch([only_grounded], io=None)[0].target.source == "grounded-sam"
