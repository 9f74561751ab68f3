"""The stage registry: one class per stage, named after its stage."""

from __future__ import annotations

from groundedit.specs import load_pipeline
from groundedit.stages import STAGES


def test_every_stage_class_is_named_after_its_stage():
    names = {name: cls.__name__ for name, cls in STAGES.items()}
    assert names == {name: f"{name.capitalize()}Stage" for name in STAGES}
    assert set(load_pipeline()) <= set(STAGES)
