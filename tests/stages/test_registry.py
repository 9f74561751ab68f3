"""The stage registry: one class per stage, named after its stage."""

from __future__ import annotations

from groundedit.specs import load_pipeline
from groundedit.stages import STAGES


def test_every_stage_class_is_named_after_its_stage():
    names = {name: cls.__name__ for name, cls in STAGES.items()}
    camel = {name: "".join(part.capitalize() for part in name.split("_")) for name in STAGES}
    assert names == {name: f"{camel[name]}Stage" for name in STAGES}  # pair_ingest: PairIngestStage
    assert set(load_pipeline()) | set(load_pipeline(recipe="pairs")) <= set(STAGES)
