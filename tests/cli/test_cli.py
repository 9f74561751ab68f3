"""The command line: front-door behaviour, one-line errors, status output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit import __version__
from groundedit.engine.runlock import run_lock
from groundedit.fixtures import synthetic_photo, write_sa1b_fixture
from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import StageSummary
from groundedit.formats.runconfig import RunConfig

REPO = Path(__file__).resolve().parents[2]


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
        (["report", "--out", "/nonexistent"], "is not a run folder"),
        (["export", "--out", "/nonexistent", "--format", "hf", "--to", "x"], "is not a run folder"),
        (["export", "--out", ".", "--format", "tfrecord", "--to", "x"], "unknown format 'tfrecord'"),
        (
            ["export", "--out", ".", "--format", "bagel-parquet", "--to", "x", "--layout", "zigzag"],
            "unknown layout",
        ),
        (["eval", "--bench", "/nonexistent", "--no-judge"], "--bench /nonexistent does not exist"),
        (
            ["eval", "--bench", ".", "--lpips-backbone", "a.pth"],
            "needs both --lpips-backbone and --lpips-linear",
        ),
        (["eval", "--bench", ".", "--profile", "huge"], "unknown profile 'huge'"),
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

    monkeypatch.chdir(REPO)
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


# --- what a new user trips on (issue 9) -----------------------------------------------------------


def _tiny(*args: str) -> list[str]:
    return [*args, "--profile", "tiny", "--executor", "local"]


@pytest.mark.slow
def test_ray_workers_import_the_installed_package_from_the_clones_parent(sa1b_input, tmp_path):
    """From the folder holding a clone named ``groundedit/`` (whose ``stages/`` holds YAML), Ray
    workers used to import that folder instead of the package. Also what a default Ray run shows: a
    fresh local cluster said in one line, even with a dead cluster recorded where ``ray.init()``
    would look for one (it used to hang on it), and none of Ray's native log lines."""
    import tempfile

    rt = Path(tempfile.mkdtemp(prefix="ge-rt-", dir="/tmp"))  # Ray's socket paths must stay short
    (rt / "ray").mkdir()
    (rt / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")  # a `ray start` cluster that is gone
    parent = tmp_path / "parent"
    clone = parent / "groundedit"
    shutil.copytree(REPO / "stages", clone / "stages")
    shutil.copytree(REPO / "prompts", clone / "prompts")
    script = Path(sys.executable).parent / "groundedit"
    try:
        proc = subprocess.run(
            [
                str(script),
                "run",
                "--stage",
                "ingest",
                "--input",
                str(sa1b_input),
                "--out",
                "run",
                "--profile",
                "tiny",
            ],
            cwd=parent,
            capture_output=True,
            text=True,
            env={**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": str(rt)},
            start_new_session=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(rt, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ModuleNotFoundError" not in proc.stderr
    assert "Token authentication" not in proc.stderr
    assert "note: started a local Ray cluster for this run (" in proc.stderr
    assert (
        "core_worker" not in proc.stderr and "core_worker" in (parent / "run/logs/ray-driver.log").read_text()
    )
    assert RunConfig.load(parent / "run").profile == "tiny"


def test_a_second_run_on_a_locked_folder_is_refused(cli, sa1b_input, tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        proc = cli(
            "run", *_tiny("--stage", "ingest", "--input", str(sa1b_input), "--out", str(out)), check=False
        )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert (
        lines == [lines[0]]
        and lines[0].startswith("error: ")
        and "in use by another groundedit run" in lines[0]
    )


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_ctrl_c_says_so_exits_130_and_leaves_a_resumable_folder(cli, sa1b_input, tmp_path, executor):
    out = tmp_path / "run"
    args = ["run", "--stage", "ingest", "--input", str(sa1b_input), "--out", str(out), "--profile", "tiny"]
    crash = {"GROUNDEDIT_CRASH_AT": "run:ticket-done@1", "GROUNDEDIT_CRASH_SIGNAL": "INT", "RAY_ADDRESS": ""}
    proc = cli(*args, "--executor", executor, env=crash, check=False)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted" in proc.stderr and "resume" in proc.stderr
    cli("run", "--out", str(out), "--stage", "ingest", "--executor", "local")
    ingest = StageSummary.load(out, "ingest")
    assert ingest.complete and ingest.rows_in == 12


def test_resume_reuses_the_folders_settings_and_refuses_others(cli, sa1b_input, tmp_path):
    out = tmp_path / "run"
    cli("run", *_tiny("--stage", "ingest", "--input", str(sa1b_input), "--out", str(out), "--seed", "4"))
    # no --profile: the folder's 'tiny' is reused (the paper preflight would fail here)
    cli("run", "--out", str(out), "--stage", "ingest", "--executor", "local")
    other = tmp_path / "other"
    write_sa1b_fixture(other, images=2, images_per_tar=2, seed=9)
    for extra, flag in (
        (["--profile", "paper"], "--profile tiny"),
        (["--input", str(other)], "--input"),
        (["--seed", "0"], "--seed 4"),
    ):
        proc = cli("run", "--out", str(out), "--stage", "ingest", "--executor", "local", *extra, check=False)
        assert proc.returncode == 1 and f"was made with {flag}" in proc.stderr, proc.stderr
    proc = cli(
        "run", "--out", str(out), "--stage", "tag", "--input", str(other), "--reconfigure", check=False
    )
    assert proc.returncode == 1 and "read by 'ingest' only" in proc.stderr
    config = RunConfig.load(out)
    assert (config.input, config.profile, config.seed) == (sa1b_input.resolve(), "tiny", 4)
    cli(
        "run",
        "--out",
        str(out),
        "--stage",
        "ingest",
        "--executor",
        "local",
        "--input",
        str(other),
        "--reconfigure",
    )
    assert RunConfig.load(out).input == other.resolve()
    assert sum(c.rows_in for c in CommitStore(out).read_all("ingest").values()) == 2


def test_empty_input_says_no_images_found_and_writes_nothing(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    proc = cli("run", *_tiny("--input", str(tmp_path / "empty"), "--out", str(tmp_path / "run")), check=False)
    assert proc.returncode == 1 and "error: no images found in" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_input_that_is_not_an_image_or_tar_writes_nothing(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    proc = cli(
        "run", *_tiny("--input", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "run")), check=False
    )
    assert proc.returncode == 1 and "neither a .tar shard nor an image" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_out_that_is_a_file_is_one_error_line(cli, sa1b_input, tmp_path):
    (tmp_path / "f").write_text("x")
    proc = cli("run", *_tiny("--input", str(sa1b_input), "--out", str(tmp_path / "f")), check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and lines == [
        "error: --out " + str(tmp_path / "f") + " is a file, not a folder"
    ]


def test_run_help_lists_the_stages(cli):
    text = " ".join(cli("run", "--help").stdout.split())
    assert "ingest, tag, ground, select, saliency, render, instruct, rewrite, edit, qc, export" in text


@pytest.mark.slow
def test_a_run_that_drops_everything_says_why(cli, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    for i in range(3):
        (d / f"broken{i}.jpg").write_bytes(b"not a jpeg at all")
    proc = cli("run", *_tiny("--input", str(d), "--out", str(tmp_path / "run")))
    assert "warning: 0 samples exported; top drop reasons: ingest/" in proc.stderr
    assert "rejected.parquet" in proc.stderr
    status = cli("status", "--out", str(tmp_path / "run")).stdout
    assert "done (0 shards)" in status


@pytest.mark.slow
def test_single_image_input_runs_end_to_end(cli, shard_reader, tmp_path):
    rgb, _ = synthetic_photo(np.random.default_rng(1), 160, 120, 3)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    out = tmp_path / "run"
    cli("run", *_tiny("--input", str(tmp_path / "photo.jpg"), "--out", str(out)))
    exported = list(shard_reader(out))
    rejected = pq.read_table(out / "rejected.parquet").column("key").to_pylist()
    assert exported + rejected == ["photo"]


@pytest.mark.slow
def test_report_export_and_eval_from_the_command_line(cli, tiny_run, tmp_path):
    out = cli("report", "--out", str(tiny_run), "--to", str(tmp_path / "report")).stderr
    assert "report: " in out and (tmp_path / "report" / "index.html").is_file()
    out = cli(
        "export", "--out", str(tiny_run), "--format", "bagel-parquet", "--to", str(tmp_path / "bp")
    ).stderr
    assert "edit " in out and "chain " in out and (tmp_path / "bp" / "dataset_info.json").is_file()
    proc = cli("eval", "--bench", str(tiny_run), "--no-judge", "--to", str(tmp_path / "eval"))
    assert "overall" in proc.stdout and (tmp_path / "eval" / "summary.csv").is_file()
    proc = cli("export", "--out", str(tiny_run), "--format", "hf", "--to", str(tmp_path / "bp"), check=False)
    assert (
        proc.returncode == 1
        and proc.stderr.startswith("error: --to")
        and "not an empty folder" in proc.stderr
    )


def _main(args: list[str], capsys) -> tuple[int, list[str]]:
    """Run the CLI in this process; its exit code and its non-empty stderr lines."""
    from groundedit.cli import main

    rc = main(args)
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_out_must_be_new_empty_or_a_run_folder_unless_forced(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_sa1b_fixture(photos, images=1, images_per_tar=1)
    rc, lines = _main(["run", *_tiny("--input", str(photos), "--out", str(photos))], capsys)
    assert rc == 1 and lines == [
        f"error: --out {photos} is the --input folder: give the run a folder of its own"
    ]
    RunConfig(out=photos, input=str(tmp_path), profile="tiny", seed=0).save()
    rc, lines = _main(["run", *_tiny("--input", str(photos), "--out", str(tmp_path / "new"))], capsys)
    assert rc == 1 and lines == [
        f"error: --input {photos} is a groundedit run folder: its outputs are not input"
    ]
    assert not (tmp_path / "new").exists()
    (photos / "manifests" / "run.json").unlink()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    rc, lines = _main(
        ["run", *_tiny("--stage", "ingest", "--input", str(photos), "--out", str(busy))], capsys
    )
    assert rc == 1 and len(lines) == 1
    assert (
        lines[0].startswith(f"error: --out {busy} is not empty and not a run folder")
        and "--force" in lines[0]
    )
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"], "nothing written"
    args = ["run", *_tiny("--stage", "ingest", "--input", str(photos), "--out", str(busy))]
    assert _main([*args, "--force"], capsys)[0] == 0
    assert (busy / "notes.txt").read_text() == "mine" and RunConfig.load(busy) is not None
    assert _main(args, capsys)[0] == 0, "a run folder resumes without --force"


def test_fixture_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    out = tmp_path / "input"
    args = ["fixture", "--out", str(out), "--images", "1", "--width", "32", "--height", "32"]
    out.mkdir()
    assert _main(args, capsys)[0] == 0, "an empty folder is fine"
    rc, lines = _main([*args, "--seed", "1"], capsys)
    assert rc == 1 and lines == [
        f"error: --out {out} is not empty: the fixture goes into a new or empty folder"
    ]
    assert [p.name for p in out.iterdir()] == ["sa_000000.tar"]


def test_fixture_of_pairs(tmp_path, capsys):
    out = tmp_path / "pairs"
    rc, lines = _main(
        ["fixture", "--out", str(out), "--pairs", "3", "--width", "96", "--height", "64"], capsys
    )
    assert (
        rc == 0
        and " ".join(" ".join(lines).split())
        == f"wrote 3 edit pairs to {out} (manifest: {out / 'pairs.jsonl'})"
    )
    assert sorted(p.name for p in out.iterdir()) == ["images", "pairs.jsonl", "truth"]
    assert len((out / "pairs.jsonl").read_text().splitlines()) == 3


# --- what a new user trips on (issue 20) ----------------------------------------------------------


def test_readme_says_how_to_reach_the_command_before_using_it():
    """A newcomer meets ``groundedit ...`` commands right after ``make install``: the README must say
    first where that command lives, and it must be there."""
    readme = (REPO / "README.md").read_text()
    first_use = min(readme.index("\ngroundedit "), readme.index("`groundedit run"))
    before = readme[:first_use]
    assert ".venv/bin/groundedit" in before and "source .venv/bin/activate" in before
    assert (Path(sys.executable).parent / "groundedit").is_file(), "make install's venv holds the command"


def test_every_option_of_every_command_says_what_it_takes():
    """Every option has help text and a readable metavar (not click's ``<list[str]>``, ``<path>``, ...)."""
    import typer.main

    from groundedit.cli import app

    root = typer.main.get_command(app)  # typer's own (vendored) click types: no isinstance on click's
    checked = 0
    for name, command in root.commands.items():
        ctx = command.context_class(command, info_name=name)
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            flags, _ = param.get_help_record(ctx)
            assert param.help, f"groundedit {name} {flags}: no help text"
            assert "<" not in flags and "TEXT" not in flags.split(), f"groundedit {name} {flags}"
            checked += 1
    assert {"fixture", "train", "eval"} <= set(root.commands) and checked > 50


def test_fixture_and_train_help_in_the_terminal(cli):
    fixture = cli("fixture", "--help").stdout
    for flag in ("--out DIR", "--images N", "--images-per-tar N", "--width PX", "--height PX", "--seed N"):
        assert flag in fixture, fixture
    assert "--data [KIND:]PATH[=WEIGHT]" in cli("train", "--help").stdout


def _jsonl_bench(folder: Path) -> Path:
    folder.mkdir()
    rgb, _ = synthetic_photo(np.random.default_rng(0), 48, 40, 2)
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(255 - rgb).save(folder / "a.edited.png")
    line = (
        '{"id": "a", "image": "a.png", "edited": "a.edited.png", "instruction": "x", "box": [4, 4, 20, 20]}'
    )
    (folder / "bench.jsonl").write_text(line + "\n")
    return folder / "bench.jsonl"


def test_eval_of_a_bench_file_writes_to_eval_results_or_to(tmp_path, capsys, monkeypatch):
    from groundedit.cli import main

    bench = _jsonl_bench(tmp_path / "bench")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--bench", str(bench), "--no-judge"]) == 0
    assert (tmp_path / "eval-results" / "samples.csv").is_file()
    assert main(["eval", "--bench", str(bench), "--no-judge", "--to", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "summary.csv").is_file()
    assert f"wrote {tmp_path / 'mine' / 'samples.csv'}" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_eval_of_a_run_folder_judges_with_its_profile_and_writes_into_it(
    tiny_run, tmp_path, capsys, monkeypatch
):
    """A tiny run scored with the judge on and no --profile: the judge is the tiny one (the default
    'paper' judge is not on this machine and would stop with an error), results in <run>/eval/."""
    import csv

    from groundedit.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # eval writes into the run folder; tiny_run is shared, read-only
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--bench", str(run), "--limit", "2"]) == 0, capsys.readouterr().err
    with open(run / "eval" / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["es"] or r["judge_raw"] for r in rows), rows
    assert not (tmp_path / "eval-results").exists()
    assert main(["eval", "--bench", str(run), "--limit", "1", "--profile", "paper"]) == 1
    assert "judge model missing" in capsys.readouterr().err, "an explicit --profile wins over the run's"


def test_status_counts_done_units_per_node(cli, spine_reference, spine_stages):
    """A local run's units were all done on this machine, named by its host name."""
    import socket

    env = {"GROUNDEDIT_STAGES_DIR": str(spine_stages)}
    table = cli("status", "--out", str(spine_reference), env=env).stdout
    assert "done units per node" in table
    (row,) = [line for line in table.splitlines() if line.startswith("│") and socket.gethostname() in line]
    assert [cell.strip() for cell in row.split("│")[2:-1]] == ["4", "4", "4", "4"]
