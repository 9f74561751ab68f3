"""Crash safety: SIGKILL at named points, rerun, and compare with an uninterrupted run."""

from __future__ import annotations

import hashlib
import signal

import pytest

from groundedit.manifest import StageManifest

pytestmark = pytest.mark.slow

CRASH_POINTS = [
    "ingest:unit-done@2",  # driver: unit files written, manifest not yet updated
    "select:unit-written@1",  # worker: kept/rejected Parquet renamed, record not yet returned
    "render:artifacts-committed@2",  # artifact tar in place, Parquet files not yet
    "render:unit-done@3",
    "edit:artifacts-committed@2",  # edited images packed, unit not yet written
    "edit:unit-done@3",
    "export:shard-written@1",  # shard + stats written, next shard not started
    "export:shard-written@2",
]


def _fingerprint(samples: dict) -> dict[str, str]:
    return {k: hashlib.sha256(b"".join(v[m] for m in sorted(v))).hexdigest() for k, v in samples.items()}


def _run(cli, input_dir, out, executor="local", env=None, check=True):
    args = ["run", "--stage", "all", "--input", str(input_dir), "--out", str(out), "--profile", "tiny"]
    # CPU matmuls round differently with different thread counts, and a Ray worker gets one thread
    # per CPU of its spec: one thread everywhere makes model outputs (edited pixels) byte-comparable
    # between the local reference and the runs under Ray.
    return cli(*args, "--executor", executor, env={"OMP_NUM_THREADS": "1", **(env or {})}, check=check)


@pytest.fixture(scope="module")
def reference(sa1b_input, tmp_path_factory, cli, shard_reader):
    out = tmp_path_factory.mktemp("reference")
    _run(cli, sa1b_input, out)
    return out, _fingerprint(shard_reader(out))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_and_resume_loses_and_duplicates_nothing(
    point, reference, sa1b_input, tmp_path, cli, shard_reader
):
    out = tmp_path / "run"
    crashed = _run(cli, sa1b_input, out, env={"GROUNDEDIT_CRASH_AT": point}, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _run(cli, sa1b_input, out)
    assert _fingerprint(shard_reader(out)) == reference[1]
    ref_shards = sorted(p.name for p in (reference[0] / "shards").iterdir())
    assert sorted(p.name for p in (out / "shards").iterdir()) == ref_shards
    assert not list(out.rglob(".*.tmp-*")), "no temp files left behind"


def test_kill_and_resume_under_ray(reference, sa1b_input, tmp_path, cli, shard_reader):
    out = tmp_path / "run"
    crashed = _run(
        cli, sa1b_input, out, "ray", env={"GROUNDEDIT_CRASH_AT": "render:unit-done@2"}, check=False
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _run(cli, sa1b_input, out, "ray")
    assert _fingerprint(shard_reader(out)) == reference[1]


def test_finished_run_is_a_noop(reference, sa1b_input, cli):
    out = reference[0]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "shards").iterdir())}
    manifests = {
        s: StageManifest.load(out, s).model_dump(exclude={"updated_at"}) for s in ("ingest", "render")
    }
    _run(cli, sa1b_input, out)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "shards").iterdir())}
    assert after == before, "shards untouched, byte for byte"
    for s, m in manifests.items():
        assert StageManifest.load(out, s).model_dump(exclude={"updated_at"}) == m


def test_changed_spec_reruns_that_stage_and_later(reference, sa1b_input, tmp_path, cli, shard_reader):
    import shutil

    from groundedit.specs import stages_dir

    out = tmp_path / "run"
    _run(cli, sa1b_input, out)
    specs = tmp_path / "stages"
    shutil.copytree(stages_dir(), specs)
    text = (specs / "render.yaml").read_text().replace("mask_opacity: 0.5", "mask_opacity: 0.8")
    (specs / "render.yaml").write_text(text)
    env = {"GROUNDEDIT_STAGES_DIR": str(specs)}
    status = cli("status", "--out", str(out), env=env).stdout
    lines = {line.split()[1]: line for line in status.splitlines() if line.startswith("│")}
    assert "stale" not in lines["ingest"] and "stale" not in lines["select"]
    assert "stale" in lines["render"] and "stale" in lines["export"]
    select_before = StageManifest.load(out, "select").model_dump(exclude={"updated_at"})
    _run(cli, sa1b_input, out, env=env)
    assert StageManifest.load(out, "select").model_dump(exclude={"updated_at"}) == select_before
    assert "stale" not in cli("status", "--out", str(out), env=env).stdout
    changed = _fingerprint(shard_reader(out))
    assert changed.keys() == reference[1].keys() and changed != reference[1]
