from __future__ import annotations

import pytest

from groundedit.specs import SpecError, available_profiles, load_pipeline, load_spec
from groundedit.stages import STAGES


def test_every_stage_spec_validates_under_every_profile():
    for profile in available_profiles():
        for name in load_pipeline():
            spec = load_spec(name, profile)
            STAGES[name].Params.model_validate(spec.params)


def test_profile_overrides_merge_over_the_base():
    paper, tiny = load_spec("ingest", "paper"), load_spec("ingest", "tiny")
    assert paper.params["unit_size"] == 256 and tiny.params["unit_size"] == 4
    assert tiny.params["min_side"] == paper.params["min_side"]  # untouched keys survive the merge


def test_hash_ignores_parallelism_but_not_params():
    spec = load_spec("render", "paper")
    more = spec.model_copy(update={"workers": 64, "batch_size": 1})
    assert more.spec_hash() == spec.spec_hash()
    other = spec.model_copy(update={"params": {**spec.params, "jpeg_quality": 80}})
    assert other.spec_hash() != spec.spec_hash()


def test_bad_specs_fail_with_the_file_name(tmp_path):
    (tmp_path / "ingest.yaml").write_text("stage: ingest\nworkers: 0\n")
    with pytest.raises(SpecError, match=r"ingest\.yaml"):
        load_spec("ingest", directory=tmp_path)
    (tmp_path / "select.yaml").write_text("stage: select\nunknown_key: 1\n")
    with pytest.raises(SpecError, match="unknown_key"):
        load_spec("select", directory=tmp_path)
    (tmp_path / "render.yaml").write_text("stage: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec("render", directory=tmp_path)
    with pytest.raises(SpecError, match="not found"):
        load_spec("nope", directory=tmp_path)


def test_stage_params_reject_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        STAGES["select"].Params.model_validate({"min_area_fraction": 0.1})


def test_profile_replaces_parameter_values_whole():
    paper, tiny = load_spec("instruct", "paper"), load_spec("instruct", "tiny")
    assert "tensor_parallel_size" in paper.params["backend_options"]
    assert tiny.params["backend_options"] == {"batch_size": 8}
    assert tiny.params["max_attempts"] == paper.params["max_attempts"]
