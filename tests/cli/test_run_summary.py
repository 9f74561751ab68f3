"""What `groundedit run` prints from the run's summary, and its exit code (in-process)."""

from __future__ import annotations

from groundedit.engine.summary import QuarantinedUnit, RunSummary
from groundedit.formats.manifest import StageSummary


def _run(monkeypatch, tmp_path, capsys, summary: RunSummary) -> tuple[int, list[str]]:
    """``groundedit run`` on a one-file input, its pipeline replaced by one that returns ``summary``."""
    from groundedit.cli import main
    from groundedit.engine.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "run", lambda self, only=None: summary)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"x")
    args = ["run", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "run"), "--executor", "local"]
    rc = main([*args, "--profile", "tiny"])
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _stage(name: str, **counts) -> StageSummary:
    return StageSummary(stage=name, spec_hash="", chain_hash="", **counts)


def test_the_run_ends_with_what_it_exported(monkeypatch, tmp_path, capsys):
    summary = RunSummary(
        stages={
            "ingest": _stage("ingest", kept=3, rejected={"image_truncated": 1}),
            "export": _stage("export", kept=3, shards=1, exported=3),
        }
    )
    rc, lines = _run(monkeypatch, tmp_path, capsys, summary)
    run = (tmp_path / "run").resolve()
    assert rc == 0
    assert lines[-1] == (
        f"exported 3 samples in 1 shard to {run / 'shards'}; dropped samples with reasons in "
        f"{run / 'rejected.parquet'}"
    )


def test_nothing_exported_names_the_top_drop_reasons(monkeypatch, tmp_path, capsys):
    summary = RunSummary(
        stages={
            "ingest": _stage("ingest", rejected={"image_truncated": 1, "empty_file": 3}),
            "select": _stage("select", rejected={"no_eligible_target": 2}),
            "export": _stage("export", shards=0, exported=0),
        }
    )
    rc, lines = _run(monkeypatch, tmp_path, capsys, summary)
    assert rc == 0 and lines[-1].startswith(
        "warning: 0 samples exported; top drop reasons: ingest/empty_file 3, select/no_eligible_target 2, "
        "ingest/image_truncated 1 (every dropped sample is in"
    )


def test_one_stage_says_what_it_kept(monkeypatch, tmp_path, capsys):
    summary = RunSummary(stages={"ingest": _stage("ingest", kept=5, rejected={"empty_file": 1})})
    rc, lines = _run(monkeypatch, tmp_path, capsys, summary)
    assert rc == 0 and lines[-1] == "ingest: 5 kept, 1 dropped (top reasons: ingest/empty_file 1)"


def test_quarantined_units_exit_3_with_one_line_each(monkeypatch, tmp_path, capsys):
    summary = RunSummary(
        stages={"export": _stage("export", shards=1, exported=2)},
        quarantined=[
            QuarantinedUnit(stage="render", unit="a.tar-00001", error="Traceback ...\nKeyError: 'boom'"),
            QuarantinedUnit(stage="qc", unit="a.tar-00002", error="worker died"),
        ],
    )
    rc, lines = _run(monkeypatch, tmp_path, capsys, summary)
    assert rc == 3
    assert lines[-3].startswith("error: 2 units failed every attempt and were set aside")
    assert lines[-2:] == ["  render a.tar-00001: KeyError: 'boom'", "  qc a.tar-00002: worker died"]
