"""The command line: front-door behaviour, one-line errors, status output."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundedit import __version__


def test_version(cli):
    assert cli("--version").stdout.strip() == f"groundedit {__version__}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--input", "/nonexistent", "--out", "x"], "input /nonexistent does not exist"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["run", "--input", ".", "--out", "x", "--stage", "paint"], "unknown stage 'paint'"),
        (["run", "--input", ".", "--out", "x", "--profile", "huge"], "unknown profile 'huge'"),
        (["run", "--input", ".", "--out", "x", "--executor", "slurm"], "unknown executor 'slurm'"),
        (["status", "--out", "/nonexistent"], "is not a run folder"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_errors_are_one_line_and_nonzero(cli, args, message, tmp_path):
    proc = cli(*[a.replace("x", str(tmp_path / "o")) if a == "x" else a for a in args], check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "/nonexistent", "--out", "x", "--profile", "tiny"], "no such file or folder"),
        (["train", "--data", "manifests", "--out", "x", "--profile", "tiny"], "no .tar shards"),
        (["train", "--data", "manifests", "--out", "x", "--profile", "huge"], "no profile 'huge'"),
        (["train", "--data", ".", "--out", "x", "--resume"], "holds no training checkpoint"),
        (["train", "--data", "x.tar=abc", "--out", "x"], "is not a number"),
        (["edit", "--ckpt", "/nonexistent", "--image", "a.jpg", "--instruction", "y"], "no Bagel checkpoint"),
        (["edit", "--ckpt", "stages", "--image", "a.jpg"], "no Bagel checkpoint"),
    ],
)
def test_train_and_edit_errors_in_process(args, message, tmp_path, capsys, monkeypatch):
    """The same one-line errors, checked in this process (cheaper than a subprocess each)."""
    from groundedit.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert main([str(tmp_path / "o") if a == "x" else a for a in args]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_single_stage_needs_its_upstream(cli, sa1b_input, tmp_path):
    out = tmp_path / "run"
    proc = cli(
        "run",
        "--stage",
        "tag",
        "--input",
        str(sa1b_input),
        "--out",
        str(out),
        "--profile",
        "tiny",
        "--executor",
        "local",
        check=False,
    )
    assert proc.returncode == 1
    assert "needs 'ingest' finished" in proc.stderr


@pytest.mark.slow
def test_stage_by_stage_then_status(cli, sa1b_input, tmp_path):
    out = tmp_path / "run"
    common = ["--input", str(sa1b_input), "--out", str(out), "--profile", "tiny", "--executor", "local"]
    for stage in ("ingest", "tag"):
        cli("run", "--stage", stage, *common)
    table = cli("status", "--out", str(out)).stdout
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│")}
    assert "done" in rows["ingest"] and "done" in rows["tag"]
    assert "not started" in rows["saliency"] and "not started" in rows["export"]
    assert "12" in rows["ingest"]
    cli("run", "--stage", "all", *common)
    table = cli("status", "--out", str(out)).stdout
    assert "not started" not in table and "stale" not in table
