from __future__ import annotations

import pytest

from groundedit.models import hub
from groundedit.models.hub import Requirement


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


def test_missing_requirements_name_the_command_that_gets_each(tmp_path, monkeypatch, hf_cache):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "present.pt"
    local.write_bytes(b"x")
    reqs = [
        Requirement("edit", "inpainter", str(local)),
        Requirement("edit", "editor", "ByteDance-Seed/BAGEL-7B-MoT"),
        Requirement("tag", "ram", "hf://xinyu1205/recognize-anything-plus-model/ram_plus_swin_large_14m.pth"),
        Requirement("edit", "lama", "models/big-lama.pt"),
        Requirement("x", "y", "./nope.pt"),
        Requirement("tag", "tags_file", str(tmp_path / "list.txt"), kind="file", fix="set params.tags_file"),
        Requirement(
            "qc", "backend", "surely_not_an_installed_package", kind="package", fix="make install-gpu"
        ),
    ]
    lines = hub.missing_requirements(reqs)
    assert len(lines) == 6, lines
    expected = [
        "edit.editor: ByteDance-Seed/BAGEL-7B-MoT (not in the Hugging Face cache; hub unreachable; "
        "`hf download ByteDance-Seed/BAGEL-7B-MoT`)",
        "`hf download xinyu1205/recognize-anything-plus-model ram_plus_swin_large_14m.pth`",
        f"`curl -L --create-dirs -o {tmp_path / 'models' / 'big-lama.pt'} {hub.KNOWN_SOURCES['big-lama.pt']}`",
        "x.y: ./nope.pt (local file not found; `put it there, or point the stage spec at where it is`)",
        f"tag.tags_file: {tmp_path / 'list.txt'} (local file not found; `set params.tags_file`)",
        "qc.backend: surely_not_an_installed_package (not installed; `make install-gpu`)",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert not any("huggingface-cli" in line or "download hf://" in line for line in lines)


def test_hub_files_in_the_cache_are_found_there(tmp_path, hf_cache):
    source = tmp_path / "weights.pth"
    source.write_bytes(b"x")
    ref = "hf://org/repo/weights.pth"
    assert hub.local_file(ref) is None
    assert hub.availability(Requirement("tag", "ram", ref)).state == "missing"
    cached = hf_cache("org/repo", "weights.pth", source)
    assert hub.local_file(ref) == cached
    assert hub.availability(Requirement("tag", "ram", ref)).state == "cached"
    assert hub.resolve(ref) == str(cached), "the run resolves to the file the check found"
    assert hub.missing_requirements([Requirement("tag", "ram", ref)]) == []


def test_an_uncached_model_is_downloadable_when_the_hub_answers(monkeypatch, hf_cache):
    req = Requirement("qc", "vlm", "Qwen/Qwen2.5-VL-7B-Instruct")
    state = hub.availability(req, hub_up=True)
    assert state.state == "downloadable" and state.fix == "hf download Qwen/Qwen2.5-VL-7B-Instruct"
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    assert hub.missing_requirements([req]) == [], "fetched at run time, not missing"


def test_pipeline_preflight_stops_before_any_work(tmp_path, monkeypatch, sa1b_input):
    import shutil

    from groundedit.engine.pipeline import Pipeline, PipelineError
    from groundedit.formats.runconfig import RunConfig
    from groundedit.specs import stages_dir

    specs = tmp_path / "stages"
    shutil.copytree(stages_dir(), specs)
    with open(specs / "render.yaml", "a") as f:
        f.write("models: {editor: /nonexistent/model}\n")
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    out = tmp_path / "run"
    pipe = Pipeline(RunConfig(out=out, input=sa1b_input, profile="tiny"))
    with pytest.raises(PipelineError, match=r"render\.editor: /nonexistent/model"):
        pipe.run()
    assert not out.exists()
