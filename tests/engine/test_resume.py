"""Crash safety: SIGKILL at named points, rerun, and compare with an uninterrupted run.

A crash point kills the process that reaches it, so each crash is a ``groundedit run`` subprocess;
the rerun that resumes it runs in this process. Crash points in model-free stages and in the driver
run on the spine (ingest → select → render → export) against ``spine_reference``; the one in a
model stage runs the whole chain against ``tiny_run``."""

from __future__ import annotations

import hashlib
import shutil
import signal

import pytest

from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import StageSummary

from ..conftest import SPINE, one_torch_thread

pytestmark = pytest.mark.slow

SPINE_CRASH_POINTS = [
    "ingest:unit-done@2",  # commit written, ticket not yet back
    "select:unit-written@1",  # kept/rejected Parquet renamed, commit not yet written
    "render:artifacts-committed@2",  # artifact tar in place, Parquet files not yet
    "render:unit-done@3",
    "export:part-written@2",  # a unit's part tar written, its commit not yet
    "export:shard-written@1",  # shard + stats written, next shard not started
    "run:ticket-done@3",  # the driver, between two units
]


def _fingerprint(samples: dict) -> dict[str, str]:
    return {k: hashlib.sha256(b"".join(v[m] for m in sorted(v))).hexdigest() for k, v in samples.items()}


def _rejected(out) -> list[tuple[str, str, str]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "rejected.parquet").to_pylist()
    return sorted((r["key"], r["stage"], r["reason"]) for r in rows)


def _commits(out, stage: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "commits" / stage).iterdir())}


def _crash(cli, input_dir, out, point: str, stages) -> None:
    """``groundedit run`` with the specs in ``stages``, killed at ``point``."""
    args = ["run", "--stage", "all", "--input", str(input_dir), "--out", str(out), "--profile", "tiny"]
    # One thread: CPU matmuls round differently with different thread counts, and the reference runs
    # were made on one (see conftest.one_torch_thread), so model outputs compare byte for byte.
    env = {"GROUNDEDIT_CRASH_AT": point, "GROUNDEDIT_STAGES_DIR": str(stages), "OMP_NUM_THREADS": "1"}
    crashed = cli(*args, "--executor", "local", env=env, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr


def _assert_same_output(out, reference, shard_reader) -> None:
    assert _fingerprint(shard_reader(out)) == _fingerprint(shard_reader(reference))
    ref_shards = sorted(p.name for p in (reference / "shards").iterdir())
    assert sorted(p.name for p in (out / "shards").iterdir()) == ref_shards
    rejected = _rejected(out)
    assert rejected == _rejected(reference), "rejected rows neither lost nor duplicated"
    assert len({k for k, _, _ in rejected}) == len(rejected)
    assert not list(out.rglob(".*.tmp-*")), "no temp files left behind"


@pytest.mark.parametrize("point", SPINE_CRASH_POINTS)
def test_kill_and_resume_loses_and_duplicates_nothing(
    point, spine_stages, spine_reference, sa1b_input, tmp_path, cli, run_pipeline, shard_reader
):
    out = tmp_path / "run"
    _crash(cli, sa1b_input, out, point, spine_stages)
    run_pipeline(sa1b_input, out, stages=spine_stages)
    _assert_same_output(out, spine_reference, shard_reader)


def test_a_kill_in_a_model_stage_resumes_to_the_same_output(
    enforcing_stages, tiny_run, sa1b_input, tmp_path, cli, run_pipeline, shard_reader
):
    """Edited images packed, the unit's rows not yet written: the rerun redoes that unit's edits
    and the output is byte for byte that of the uninterrupted run."""
    out = tmp_path / "run"
    _crash(cli, sa1b_input, out, "edit:artifacts-committed@2", enforcing_stages)
    with one_torch_thread():
        run_pipeline(sa1b_input, out, stages=enforcing_stages)
    _assert_same_output(out, tiny_run, shard_reader)


def test_finished_run_is_a_noop(tiny_run, enforcing_stages, sa1b_input, tmp_path, capsys, monkeypatch):
    """The whole chain, finished, run again from the command line (in this process): nothing is
    redone or rewritten. On a copy: ``tiny_run`` is shared."""
    from groundedit.cli import main

    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "shards").iterdir())}
    commits = {s: _commits(out, s) for s in ("ingest", "render", "edit", "export")}
    summaries = {
        s: StageSummary.load(out, s).model_dump(exclude={"updated_at"}) for s in ("ingest", "render", "edit")
    }
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(enforcing_stages))
    args = ["run", "--stage", "all", "--input", str(sa1b_input), "--out", str(out), "--profile", "tiny"]
    assert main([*args, "--executor", "local"]) == 0, capsys.readouterr().err
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "shards").iterdir())}
    assert after == before, "shards untouched, byte for byte"
    for s, c in commits.items():
        assert _commits(out, s) == c, f"{s} commits untouched"
    for s, m in summaries.items():
        assert StageSummary.load(out, s).model_dump(exclude={"updated_at", "units_ran"}) == {
            k: v for k, v in m.items() if k != "units_ran"
        }
        assert StageSummary.load(out, s).units_ran == 0


def test_changed_spec_reruns_that_stage_and_later(
    spine_reference, sa1b_input, tmp_path, run_pipeline, status_of, stages_copy, shard_reader
):
    out = tmp_path / "run"
    shutil.copytree(spine_reference, out)  # spine_reference is shared
    edits = {"render": ("mask_opacity: 0.5", "mask_opacity: 0.8")}
    specs = stages_copy(tmp_path / "stages", order=SPINE, edits=edits)
    states = {name: st.state for name, st in status_of(out, specs).items()}
    assert states == {"ingest": "done", "select": "done", "render": "stale", "export": "stale"}
    select_before = _commits(out, "select")
    run_pipeline(sa1b_input, out, stages=specs)
    assert _commits(out, "select") == select_before
    assert {st.state for st in status_of(out, specs).values()} == {"done"}
    changed = _fingerprint(shard_reader(out))
    reference = _fingerprint(shard_reader(spine_reference))
    assert changed.keys() == reference.keys() and changed != reference


# --- issue 12: what a later stage may trust ------------------------------------------------------


def _tar_members(folder) -> dict[str, bytes]:
    import tarfile

    found = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                found[m.name] = tar.extractfile(m).read()
    return found


def _forget(out, stage: str, units: list[str]) -> None:
    """Make the run folder forget that ``stage`` finished ``units`` (as a crash right before their
    commit would), in the given order."""
    for u in units:
        CommitStore(out).remove(stage, u)


def test_a_stage_redone_with_other_bytes_is_not_trusted_downstream(
    spine_stages, sa1b_input, tmp_path, run_pipeline, status_of, shard_reader, monkeypatch, stages_copy
):
    """Change render's spec, run render, change it back, run render: with non-deterministic kernels
    render rewrote its tars twice with other bytes, so export must not say 'done' or ship old bytes."""
    import itertools

    import groundedit.stages.render as render_module

    out = tmp_path / "run"
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    run_pipeline(sa1b_input, out)
    calls, real = itertools.count(1), render_module.encode_jpeg
    monkeypatch.setattr(render_module, "encode_jpeg", lambda im, q: real(im, q - next(calls) % 7))
    other = stages_copy(tmp_path / "b", edits={"render": ("mask_opacity: 0.5", "mask_opacity: 0.8")})
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(other))
    run_pipeline(sa1b_input, out, stage="render")
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    run_pipeline(sa1b_input, out, stage="render")
    assert status_of(out, spine_stages)["export"].state == "stale"
    run_pipeline(sa1b_input, out)
    rendered = _tar_members(out / "data" / "render")
    exported = shard_reader(out)
    assert exported
    for key, members in exported.items():
        for name in ("src.jpg", "grounded.jpg", "mask.png"):
            assert members[name] == rendered[f"{key}.{name}"], f"{key}.{name} is not what render holds now"


def test_status_propagates_staleness_down_the_chain(
    spine_stages, tmp_path, run_pipeline, status_of, monkeypatch
):
    import shutil

    from groundedit.fixtures import write_sa1b_fixture

    inp = tmp_path / "in"
    write_sa1b_fixture(inp, images=4, images_per_tar=2, seed=1)
    out = tmp_path / "run"
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    run_pipeline(inp, out)
    write_sa1b_fixture(tmp_path / "other", images=4, images_per_tar=2, seed=5)
    shutil.copy(tmp_path / "other" / "sa_000001.tar", inp / "sa_000001.tar")  # same name, other photos
    run_pipeline(inp, out, stage="ingest")
    states = status_of(out, spine_stages)
    assert states["ingest"].state == "done"
    for stage in ("select", "render", "export"):
        assert states[stage].state == "stale", (stage, states[stage])


def test_export_does_not_depend_on_the_order_units_finished(
    spine_stages, sa1b_input, tmp_path, run_pipeline, monkeypatch
):
    out = tmp_path / "run"
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    run_pipeline(sa1b_input, out)
    shards = sorted((out / "shards").iterdir())
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in shards}
    units = sorted(
        p.name.removesuffix(".rejected.parquet") for p in (out / "data" / "render").glob("*.rejected.parquet")
    )
    _forget(out, "render", [units[1], units[0]])  # redone, with the same bytes, in another order
    summary = run_pipeline(sa1b_input, out)
    assert summary.stages["render"].units_ran == 2
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "shards").iterdir())}
    assert after == before, "export is a no-op: its input did not change"


def test_a_tar_rewritten_in_place_with_the_same_stat_is_caught_when_read(
    spine_stages, tmp_path, run_pipeline, shard_reader, monkeypatch
):
    """A tar's listing is trusted while its size, mtime and inode are unchanged. A tar rewritten in
    place after ingest read it, keeping all three (other pixels, same member layout), is still
    caught: the next run reads no header and finds ingest done, but render finds the bytes are not
    the ones ingest recorded, fails the unit and forgets the listing; the run after that redoes the
    unit and ends as a fresh run on the new bytes does."""
    import os
    from pathlib import Path

    import groundedit.formats.scan as scan
    from groundedit.fixtures import write_sa1b_fixture

    inp, out = tmp_path / "in", tmp_path / "run"
    write_sa1b_fixture(inp, images=4, images_per_tar=2, seed=1)
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    run_pipeline(inp, out, stage="ingest")
    tar = inp / "sa_000001.tar"
    st = os.stat(tar)
    with open(tar, "r+b") as f:  # one quantisation step of each JPEG: other pixels, same layout
        data = f.read()
        at = data.find(b"\xff\xdb")
        while at >= 0:
            f.seek(at + 6)
            f.write(bytes([data[at + 6] + 9]))
            at = data.find(b"\xff\xdb", at + 2)
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(tar).st_size, os.stat(tar).st_mtime_ns, os.stat(tar).st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    reads, real = [], scan.scan_tar
    monkeypatch.setattr(scan, "scan_tar", lambda p: reads.append(Path(p).name) or real(p))
    summary = run_pipeline(inp, out)
    assert reads == [] and summary.stages["ingest"].units_ran == 0, "listed as it was, ingest done"
    [q] = summary.quarantined
    assert (q.stage, q.unit) == (
        "render",
        "sa_000001.tar-00000",
    ) and "changed since it was recorded" in q.error
    summary = run_pipeline(inp, out)
    assert reads == ["sa_000001.tar"] and summary.stages["ingest"].units_ran == 1
    assert not summary.quarantined
    fresh = tmp_path / "fresh"
    run_pipeline(inp, fresh)
    assert shard_reader(out) == shard_reader(fresh)
    assert any(k in ("sa_3", "sa_4") for k in shard_reader(fresh)), "render read that tar's photos"
