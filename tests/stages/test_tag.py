"""The tag stage as a `paper` run meets it: the checkpoint alone, as the Hugging Face repository ships
it, with RAM++'s vocabulary coming from groundedit; and a preflight that names every file it reads."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from groundedit.formats.runconfig import RunConfig
from groundedit.models import hub
from groundedit.models.perception import ram_vocab
from groundedit.specs import load_spec
from groundedit.stages.tag import TagStage

RAM_REPO = "xinyu1205/recognize-anything-plus-model"
RAM_FILE = "ram_plus_swin_large_14m.pth"


@pytest.fixture(scope="module")
def ingested_samples(sa1b_input, tmp_path_factory, run_pipeline):
    from groundedit.formats.storage import read_rows
    from groundedit.records import Sample

    out = tmp_path_factory.mktemp("tag-paper")
    run_pipeline(sa1b_input, out, stage="ingest")
    return [
        s for p in sorted((out / "data" / "ingest").glob("*-?????.parquet")) for s in read_rows(p, Sample)
    ]


def _paper_stage(tmp_path, **params) -> TagStage:
    spec = load_spec("tag", "paper")
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    return TagStage(spec, RunConfig(out=tmp_path, input=tmp_path, profile="paper"))


def _released_layout_checkpoint(path, fc_bias: float):
    """A RAM++ ``.pth`` with tiny Swin/head sizes but the released 4,585-tag vocabulary, under the
    official key names and with nothing beside it."""
    from groundedit.models.perception.ram_plus_adapter import ours_to_official
    from groundedit.models.perception.tiny import build_ram_plus

    ram = build_ram_plus("tiny", len(ram_vocab.read_tag_list(ram_vocab.SHIPPED_DIR / ram_vocab.TAGS_FILE)), 0)
    with torch.no_grad():
        ram.fc.bias.fill_(fc_bias)  # every probability ~1: each tag passes unless its threshold is 1.0
    torch.save({"model": ours_to_official(ram)}, path)
    return path


def test_paper_spec_tags_with_the_checkpoint_alone(tmp_path, hf_cache, ingested_samples):
    source = _released_layout_checkpoint(tmp_path / RAM_FILE, fc_bias=30.0)
    cached = hf_cache(RAM_REPO, RAM_FILE, source)
    assert sorted(p.name for p in cached.parent.iterdir()) == [RAM_FILE], "the repository's layout"

    stage = _paper_stage(tmp_path, max_tags=5)
    assert stage.spec.models["ram"] == f"hf://{RAM_REPO}/{RAM_FILE}"
    assert hub.missing_requirements(stage.requirements()) == [], "preflight passes"
    stage.setup()  # resolve() -> the cached .pth; vocabulary: the shipped lists; sizes: from the shapes
    tagger = stage.tagger
    assert tagger.model.config.num_tags == 4585 and tagger.model.config.embed_dim == 16

    vocab = ram_vocab.Vocab.load(ram_vocab.vocab_files(None))
    out = stage.process_batch(ingested_samples[:2], io=None)
    for s in out:
        assert s.rejection is None and len(s.tags) == 5
        for t in s.tags:
            i = vocab.tags.index(t.name)
            assert vocab.thresholds[i] < 1.0 and t.name_zh == vocab.chinese[i] and t.name_zh
    never = {vocab.tags[i] for i in np.flatnonzero(vocab.thresholds >= 1.0)}
    assert never, "the released thresholds hold tags that never fire"
    full = tagger.tag([np.zeros((64, 64, 3), np.uint8)])[0]
    assert len(full) == 4585 - len(never) and not {t for t, _ in full} & never


def test_preflight_lists_the_tag_files_when_they_are_absent(tmp_path, hf_cache, monkeypatch):
    monkeypatch.setattr(ram_vocab, "SHIPPED_DIR", tmp_path / "lost-package-data")
    lines = hub.missing_requirements(_paper_stage(tmp_path).requirements())
    by_role = {line.split(":")[0]: line for line in lines}
    assert set(by_role) == {"tag.ram", "tag.tags_file", "tag.thresholds_file"}, lines
    assert f"`hf download {RAM_REPO} {RAM_FILE}`" in by_role["tag.ram"]
    assert (
        "lost-package-data/ram_tag_list.txt (local file not found; `reinstall groundedit"
        in by_role["tag.tags_file"]
    )
    assert "ram_tag_list_threshold.txt" in by_role["tag.thresholds_file"]


def test_preflight_checks_named_vocabulary_files(tmp_path, hf_cache):
    named = tmp_path / "mine.txt"
    stage = _paper_stage(tmp_path, tags_file=str(named), chinese_file=str(tmp_path / "zh.txt"))
    lines = [
        line for line in hub.missing_requirements(stage.requirements()) if not line.startswith("tag.ram")
    ]
    assert [line.split(":")[0] for line in lines] == [
        "tag.tags_file",
        "tag.thresholds_file",
        "tag.chinese_file",
    ]
    assert "point stages/tag.yaml params.tags_file" in lines[0]
    assert f"{tmp_path / 'ram_tag_list_threshold.txt'} (local file not found; `put" in lines[1]
    assert "beside the tag list" in lines[1] and "point stages/tag.yaml params.chinese_file" in lines[2]
    named.write_text("a\n")
    (tmp_path / "ram_tag_list_threshold.txt").write_text("0.5\n")
    (tmp_path / "zh.txt").write_text("甲\n")
    assert next(r.ref for r in stage.requirements() if r.kind == "file") == str(named)
    assert len(hub.missing_requirements(stage.requirements())) == 1, "only the checkpoint is left"


def test_pipeline_preflight_names_a_missing_tag_list(tmp_path, monkeypatch, sa1b_input):
    from groundedit.engine.pipeline import Pipeline, PipelineError
    from groundedit.specs import stages_dir

    specs = tmp_path / "stages"
    shutil.copytree(stages_dir(), specs)
    with open(specs / "tag.yaml", "a") as f:
        f.write("    params: {tags_file: /nonexistent/ram_tag_list.txt}\n")  # inside profiles.tiny
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match=r"tag\.tags_file: /nonexistent/ram_tag_list\.txt \(local file"):
        Pipeline(RunConfig(out=out, input=sa1b_input, profile="tiny")).run()
    assert not out.exists()


def test_the_shipped_vocabulary_is_complete_and_attributed():
    vocab = ram_vocab.Vocab.load(ram_vocab.vocab_files(None))
    assert len(vocab.tags) == len(set(vocab.tags)) == len(vocab.chinese) == len(vocab.thresholds) == 4585
    assert all(vocab.chinese) and all(name == name.strip() for name in vocab.chinese)
    assert vocab.thresholds.min() > 0 and vocab.thresholds.max() <= 1
    notice = (ram_vocab.SHIPPED_DIR / "NOTICE").read_text()
    assert "xinyu1205/recognize-anything" in notice and "Apache License" in notice
    assert "Copyright (c) 2022 OPPO" in (ram_vocab.SHIPPED_DIR / "LICENSE").read_text()
