"""Run folders remember their settings; changing them needs --reconfigure."""

from __future__ import annotations

import json
import pickle

import pytest

from groundedit.engine.settings import SettingsError, resolve_config
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import RunFolder


def _resolve(out, **asked):
    kw = {"input": None, "profile": None, "seed": None, "limit": None, "stage": "all"}
    return resolve_config(out, source_stage="ingest", **(kw | asked))


def test_new_folder_needs_an_input_and_takes_defaults(tmp_path):
    with pytest.raises(SettingsError, match="--input is required"):
        _resolve(tmp_path / "run")
    config = _resolve(tmp_path / "run", input=tmp_path)
    assert (config.input, config.profile, config.seed, config.limit) == (tmp_path.resolve(), "paper", 0, None)
    assert config.out == (tmp_path / "run").resolve()


def test_resume_reuses_the_folder_settings(tmp_path):
    RunConfig(out=tmp_path / "run", input=tmp_path, profile="tiny", seed=3, limit=5).save()
    config = _resolve(tmp_path / "run")
    assert (config.input, config.profile, config.seed, config.limit) == (tmp_path, "tiny", 3, 5)
    same = _resolve(tmp_path / "run", input=tmp_path, profile="tiny", seed=3)
    assert same == config


@pytest.mark.parametrize(
    ("asked", "message"), [({"profile": "paper"}, "--profile tiny"), ({"seed": 1}, "--seed 3")]
)
def test_other_settings_are_refused_unless_reconfigured(tmp_path, asked, message):
    RunConfig(out=tmp_path / "run", input=tmp_path, profile="tiny", seed=3).save()
    with pytest.raises(SettingsError, match=rf"was made with {message}.*--reconfigure"):
        _resolve(tmp_path / "run", **asked)
    config = _resolve(tmp_path / "run", reconfigure=True, **asked)
    assert getattr(config, next(iter(asked))) == next(iter(asked.values()))


def test_new_input_only_through_the_source_stage(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    RunConfig(out=tmp_path / "run", input=tmp_path, profile="tiny", seed=0).save()
    with pytest.raises(SettingsError, match="was made with --input"):
        _resolve(tmp_path / "run", input=other, stage="all")
    with pytest.raises(SettingsError, match="read by 'ingest' only"):
        _resolve(tmp_path / "run", input=other, stage="tag", reconfigure=True)
    assert _resolve(tmp_path / "run", input=other, stage="ingest", reconfigure=True).input == other


def test_limit_changes_freely_and_zero_lifts_it(tmp_path):
    RunConfig(out=tmp_path / "run", input=tmp_path, profile="tiny", seed=0, limit=4).save()
    assert _resolve(tmp_path / "run", limit=8).limit == 8
    assert _resolve(tmp_path / "run", limit=0).limit is None


def test_only_persisted_settings_can_be_asked_for(tmp_path):
    with pytest.raises(TypeError, match="run_id"):
        _resolve(tmp_path / "run", input=tmp_path, run_id="x")


def test_run_json_holds_the_persisted_fields_only(tmp_path):
    """``out``, ``env`` and ``run_id`` travel with the config (to workers, by pickle) but never reach
    run.json; loading gives back the persisted fields with the folder as ``out``."""
    config = RunConfig(
        out=tmp_path / "run",
        input=tmp_path,
        profile="tiny",
        seed=2,
        limit=3,
        env={"HF_HOME": "/x"},
        run_id="r1",
    )
    assert pickle.loads(pickle.dumps(config)) == config
    config.save()
    saved = RunFolder(tmp_path / "run").run_json.read_text()
    assert set(json.loads(saved)) == {
        "input",
        "profile",
        "seed",
        "limit",
        "recipe",
        "input_kind",
        "columns",
        "version",
    }
    loaded = RunConfig.load(tmp_path / "run")
    assert loaded == config.model_copy(update={"out": (tmp_path / "run").resolve(), "env": {}, "run_id": ""})
    assert RunConfig.load(tmp_path / "elsewhere") is None


def test_the_recipe_and_how_its_input_is_read_are_remembered(tmp_path):
    """A pairs run resumes as a pairs run; asking its folder for another recipe or column mapping is
    refused (it would redo everything) unless reconfigured."""
    out = tmp_path / "run"
    asked = {"input": tmp_path, "recipe": "pairs", "input_kind": "hf", "columns": {"source": "a"}}
    resolve_config(out, stage="all", source_stage="pair_ingest", **asked).save()
    again = resolve_config(out, stage="all", source_stage="pair_ingest")
    assert (again.recipe, again.input_kind, again.columns) == ("pairs", "hf", {"source": "a"})
    with pytest.raises(SettingsError, match="made with --recipe pairs; this run asks for --recipe sa1b"):
        resolve_config(out, stage="all", source_stage="ingest", recipe="sa1b")
    with pytest.raises(SettingsError, match="--columns source=a; this run asks for --columns source=b"):
        resolve_config(out, stage="all", source_stage="pair_ingest", columns={"source": "b"})
    assert (
        resolve_config(out, stage="all", source_stage="ingest", recipe="sa1b", reconfigure=True).recipe
        == "sa1b"
    )
