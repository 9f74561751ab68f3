from __future__ import annotations

import pytest

from groundedit.models import hub


def test_tiny_models_build_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDEDIT_CACHE", str(tmp_path))
    first = hub.resolve("tiny://lama")
    mtime = (tmp_path / "tiny").stat().st_mtime_ns
    assert hub.resolve("tiny://lama") == first and first.endswith("big-lama.pt")
    assert len(list((tmp_path / "tiny").iterdir())) == 2  # the model folder and its lock file
    assert (tmp_path / "tiny").stat().st_mtime_ns == mtime


def test_unknown_tiny_model_fails_before_work():
    with pytest.raises(ValueError, match="unknown tiny model 'nope'"):
        hub.missing_models([("edit", "lama", "tiny://nope")])


def test_missing_models_are_listed_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    local = tmp_path / "big-lama.pt"
    local.write_bytes(b"x")
    lines = hub.missing_models(
        [
            ("edit", "lama", str(local)),
            ("edit", "editor", "ByteDance-Seed/BAGEL-7B-MoT"),
            ("x", "y", "./nope.pt"),
        ]
    )
    assert len(lines) == 2
    assert any("ByteDance-Seed/BAGEL-7B-MoT" in line and "huggingface-cli download" in line for line in lines)
    assert any("./nope.pt (local file not found)" in line for line in lines)


def test_pipeline_preflight_stops_before_any_work(tmp_path, monkeypatch, sa1b_input):
    import shutil

    from groundedit.pipeline import Pipeline, PipelineError
    from groundedit.specs import stages_dir
    from groundedit.stages import RunContext

    specs = tmp_path / "stages"
    shutil.copytree(stages_dir(), specs)
    with open(specs / "render.yaml", "a") as f:
        f.write("models: {editor: /nonexistent/model}\n")
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    out = tmp_path / "run"
    pipe = Pipeline(RunContext(out=out, input=sa1b_input, profile="tiny"))
    with pytest.raises(PipelineError, match=r"render\.editor: /nonexistent/model"):
        pipe.run()
    assert not out.exists()
