from __future__ import annotations

from pathlib import Path

import pytest

from groundedit.engine.runner import Unit, run_unit
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows, write_rows
from groundedit.records import BlobRef, Sample, Source
from groundedit.specs import StageSpec
from groundedit.stages.base import Stage


class Flaky(Stage):
    """Raises on one sample; must not take the others down."""

    name = "flaky"

    def process_batch(self, batch, io):
        if any(s.key == "bad" for s in batch):
            raise ZeroDivisionError("boom")
        return [s.model_copy(update={"num_candidates": 1}) for s in batch]


def _samples(keys):
    src = Source(
        dataset="images", image_id="x", file_name="x.jpg", width=1, height=1, image=BlobRef(path="/x")
    )
    return [Sample(key=k, source=src.model_copy(update={"image_id": k})) for k in keys]


def test_a_raising_sample_is_rejected_and_the_rest_kept(tmp_path: Path):
    write_rows(_samples(["a", "bad", "c", "d"]), tmp_path / "in.parquet")
    stage = Flaky(StageSpec(stage="flaky", batch_size=4), RunConfig(out=tmp_path, input=tmp_path))
    rec = run_unit(stage, Unit(id="u", fingerprint="f", rows=4, input_file=tmp_path / "in.parquet"), "chain")
    assert (rec.kept, rec.rejected) == (3, {"stage_exception": 1})
    kept = read_rows(tmp_path / rec.file, Sample)
    assert [s.key for s in kept] == ["a", "c", "d"] and all(s.num_candidates == 1 for s in kept)
    (rej,) = read_rows(tmp_path / rec.rejected_file, Sample)
    assert rej.key == "bad" and "ZeroDivisionError: boom" in rej.rejection.detail


@pytest.mark.slow
def test_new_input_adds_units_without_redoing_old_ones(tmp_path, run_pipeline, shard_reader):
    from groundedit.fixtures import write_sa1b_fixture
    from groundedit.formats.commits import CommitStore

    inp = tmp_path / "in"
    write_sa1b_fixture(inp, images=6, images_per_tar=6, seed=1)
    out = tmp_path / "run"
    run_pipeline(inp, out)
    before = CommitStore(out).read_all("render")
    write_sa1b_fixture(tmp_path / "more", images=12, images_per_tar=6, seed=2)
    (tmp_path / "more" / "sa_000001.tar").rename(inp / "sa_000001.tar")
    summary = run_pipeline(inp, out)
    after = CommitStore(out).read_all("render")
    assert summary.stages["render"].units_ran == len(after) - len(before) > 0
    assert all(after[u] == r for u, r in before.items())


class Broken(Stage):
    """A bug: every sample raises. The stage must stop, not reject the whole dataset."""

    name = "broken"

    def process_batch(self, batch, io):
        return [undefined_name for _ in batch]  # noqa: F821


def test_a_systematic_bug_stops_the_stage(tmp_path: Path):
    from groundedit.engine.runner import StageFailed

    write_rows(_samples(["a", "b", "c"]), tmp_path / "in.parquet")
    stage = Broken(StageSpec(stage="broken", batch_size=2), RunConfig(out=tmp_path, input=tmp_path))
    with pytest.raises(StageFailed, match="NameError"):
        run_unit(stage, Unit(id="u", fingerprint="f", rows=3, input_file=tmp_path / "in.parquet"), "chain")
    assert not (tmp_path / "data").exists(), "nothing committed"


class Painter(Stage):
    """Writes an artifact per sample, then fails on a batch holding 'bad' (after writing)."""

    name = "painter"

    def process_batch(self, batch, io):
        out = []
        for s in batch:
            ref = io.artifacts.add(f"{s.key}.paint.png", s.key.encode() * 8)
            out.append(s.model_copy(update={"artifacts": {"paint.png": ref}}))
        if any(s.key == "bad" for s in batch):
            raise ValueError("after painting")
        return out


def test_a_batch_retried_sample_by_sample_does_not_duplicate_artifacts(tmp_path: Path):
    import tarfile

    write_rows(_samples(["a", "bad", "c", "d"]), tmp_path / "in.parquet")
    stage = Painter(StageSpec(stage="painter", batch_size=4), RunConfig(out=tmp_path, input=tmp_path))
    rec = run_unit(stage, Unit(id="u", fingerprint="f", rows=4, input_file=tmp_path / "in.parquet"), "chain")
    with tarfile.open(tmp_path / rec.artifacts) as tar:
        names = tar.getnames()
    assert sorted(names) == ["a.paint.png", "c.paint.png", "d.paint.png"]
    from groundedit.formats.tar import read_blob

    for s in read_rows(tmp_path / rec.file, Sample):
        assert read_blob(s.artifacts["paint.png"], tmp_path) == s.key.encode() * 8


class Counted(Stage):
    """Keeps every sample; counts setups."""

    name = "counted"

    def setup(self):
        self.setups = getattr(self, "setups", 0) + 1

    def process_batch(self, batch, io):
        return batch


def _unit(tmp_path: Path, uid: str) -> Unit:
    write_rows(_samples(["a", "b"]), tmp_path / f"{uid}.parquet")
    return Unit(id=uid, fingerprint="f", rows=2, input_file=tmp_path / f"{uid}.parquet")


def test_setup_is_charged_to_the_first_unit_only(tmp_path: Path):
    from groundedit.engine.runner import setup_stage

    stage = Counted(StageSpec(stage="counted", batch_size=2), RunConfig(out=tmp_path, input=tmp_path))
    setup_stage(stage)
    assert stage.setups == 1 and stage.unbilled_setup_seconds >= 0
    stage.unbilled_setup_seconds = 2.5  # as if loading models had taken 2.5 s
    first = run_unit(stage, _unit(tmp_path, "u1"), "chain")
    second = run_unit(stage, _unit(tmp_path, "u2"), "chain")
    assert (first.setup_seconds, second.setup_seconds) == (2.5, 0.0)
    assert first.device == second.device == "cpu"
    assert first.gpu_seconds is None and second.gpu_seconds is None, "no GPU: no GPU-seconds"


def test_gpu_seconds_count_the_gpus_the_worker_held(tmp_path: Path, monkeypatch):
    from types import SimpleNamespace

    # A model stage in a process where CUDA is available (a stand-in torch: no GPU needed here).
    monkeypatch.setitem(
        __import__("sys").modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: True))
    )
    config = RunConfig(out=tmp_path, input=tmp_path)
    spec = StageSpec(stage="counted", batch_size=2, models={"m": "x"}, resources={"cpus": 1, "gpus": 2})
    stage = Counted(spec, config)
    stage.unbilled_setup_seconds = 1.0
    rec = run_unit(stage, _unit(tmp_path, "u1"), "chain")
    assert rec.device == "cuda"
    assert rec.gpu_seconds == pytest.approx((rec.seconds + 1.0) * 2, abs=2e-3)
    one = Counted(StageSpec(stage="counted", batch_size=2, models={"m": "x"}), config)
    rec = run_unit(one, _unit(tmp_path, "u2"), "chain")
    assert rec.gpu_seconds == pytest.approx(rec.seconds, abs=2e-3), "a spec asking no GPU still used one"
    free = Counted(StageSpec(stage="counted", batch_size=2), config)  # no models: never on the GPU
    rec = run_unit(free, _unit(tmp_path, "u3"), "chain")
    assert rec.device == "cpu" and rec.gpu_seconds is None
