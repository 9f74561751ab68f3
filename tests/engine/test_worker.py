"""Units that keep failing are quarantined; the rest of the run goes on; a rerun retries them."""

from __future__ import annotations

import pytest

from groundedit.formats.commits import CommitStore
from groundedit.image.codec import SampleError

pytestmark = pytest.mark.slow


def test_a_unit_that_keeps_failing_is_quarantined_and_retried_next_run(
    spine_stages, sa1b_input, tmp_path, run_pipeline, shard_reader, monkeypatch, cli
):
    import groundedit.stages.render as render

    real = render.RenderStage._render
    tries = []

    def broken_for_sa_5(self, s, io):
        if s.key in ("sa_5", "sa_6"):  # the whole unit sa_000000.tar-00001: a bug, not bad data
            tries.append(s.key)
            raise KeyError("boom")
        return real(self, s, io)

    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    monkeypatch.setattr(render.RenderStage, "_render", broken_for_sa_5)
    out = tmp_path / "run"
    summary = run_pipeline(sa1b_input, out, max_attempts=2)
    bad = "sa_000000.tar-00001"
    [failed] = summary.quarantined
    assert (failed.stage, failed.unit) == ("render", bad) and summary.stages["render"].units_quarantined == 1
    assert "failed on 2 of 2 samples" in failed.error
    assert summary.stages["export"].units_blocked == 1 and summary.sink.exported == 10
    assert tries.count("sa_5") == 4, "two attempts (each: the batch, then alone), then set aside"
    failure = CommitStore(out).read_failure("render", bad)
    assert failure.attempts == 2 and "KeyError" in failure.error
    exported = shard_reader(out)
    assert "sa_5" not in exported and len(exported) == 10
    status = cli("status", "--out", str(out), env={"GROUNDEDIT_STAGES_DIR": str(spine_stages)}).stdout
    assert "1 failed" in status
    monkeypatch.setattr(render.RenderStage, "_render", real)  # the bug is fixed
    summary = run_pipeline(sa1b_input, out)
    assert summary.stages["render"].units_ran == 1 and not summary.quarantined
    assert len(shard_reader(out)) == 12
    assert CommitStore(out).read_failure("render", bad) is None


def test_sample_errors_are_rejections_not_failures(
    spine_stages, sa1b_input, tmp_path, run_pipeline, monkeypatch
):
    import groundedit.stages.render as render

    real = render.RenderStage._render

    def unreadable(self, s, io):
        if s.key == "sa_5":
            raise SampleError("image_truncated", "cut short")
        return real(self, s, io)

    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    monkeypatch.setattr(render.RenderStage, "_render", unreadable)
    summary = run_pipeline(sa1b_input, tmp_path / "run")
    assert summary.stages["render"].rejected == {"image_truncated": 1} and not summary.quarantined
