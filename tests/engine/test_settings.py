"""Run folders remember their settings; changing them needs --reconfigure."""

from __future__ import annotations

import pytest

from groundedit.engine.settings import SettingsError, resolve_settings
from groundedit.formats.manifest import RunInfo


def _resolve(out, **asked):
    kw = {"input": None, "profile": None, "seed": None, "limit": None, "stage": "all"}
    return resolve_settings(out, source_stage="ingest", **(kw | asked))


def test_new_folder_needs_an_input_and_takes_defaults(tmp_path):
    with pytest.raises(SettingsError, match="--input is required"):
        _resolve(tmp_path / "run")
    info = _resolve(tmp_path / "run", input=tmp_path)
    assert (info.input, info.profile, info.seed, info.limit) == (str(tmp_path.resolve()), "paper", 0, None)


def test_resume_reuses_the_folder_settings(tmp_path):
    RunInfo(input=str(tmp_path), profile="tiny", seed=3, limit=5).save(tmp_path / "run")
    info = _resolve(tmp_path / "run")
    assert (info.input, info.profile, info.seed, info.limit) == (str(tmp_path), "tiny", 3, 5)
    same = _resolve(tmp_path / "run", input=tmp_path, profile="tiny", seed=3)
    assert same == info


@pytest.mark.parametrize(
    ("asked", "message"), [({"profile": "paper"}, "--profile tiny"), ({"seed": 1}, "--seed 3")]
)
def test_other_settings_are_refused_unless_reconfigured(tmp_path, asked, message):
    RunInfo(input=str(tmp_path), profile="tiny", seed=3).save(tmp_path / "run")
    with pytest.raises(SettingsError, match=rf"was made with {message}.*--reconfigure"):
        _resolve(tmp_path / "run", **asked)
    info = _resolve(tmp_path / "run", reconfigure=True, **asked)
    assert getattr(info, next(iter(asked))) == next(iter(asked.values()))


def test_new_input_only_through_the_source_stage(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    RunInfo(input=str(tmp_path), profile="tiny", seed=0).save(tmp_path / "run")
    with pytest.raises(SettingsError, match="was made with --input"):
        _resolve(tmp_path / "run", input=other, stage="all")
    with pytest.raises(SettingsError, match="read by 'ingest' only"):
        _resolve(tmp_path / "run", input=other, stage="tag", reconfigure=True)
    assert _resolve(tmp_path / "run", input=other, stage="ingest", reconfigure=True).input == str(other)


def test_limit_changes_freely_and_zero_lifts_it(tmp_path):
    RunInfo(input=str(tmp_path), profile="tiny", seed=0, limit=4).save(tmp_path / "run")
    assert _resolve(tmp_path / "run", limit=8).limit == 8
    assert _resolve(tmp_path / "run", limit=0).limit is None
