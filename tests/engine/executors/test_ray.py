"""The Ray executor: workers get what the driver resolved; resources are checked before any work."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from ...conftest import assert_candidates_from_tag_and_ground


@pytest.mark.slow
def test_workers_use_the_drivers_prompts_and_relative_model_paths(
    ray_cluster, plain_folder, tmp_path, run_pipeline, shard_reader, stages_copy, monkeypatch
):
    """The Ray cluster was started before these settings existed, so its workers can only know
    them from the driver: a prompt folder named by GROUNDEDIT_PROMPTS_DIR and a model path relative
    to the driver's working directory. The input is plain photos, so the same run shows tag and
    ground giving them their candidates in Ray workers."""
    from groundedit.models.hub import resolve
    from groundedit.specs import prompts_dir

    prompts = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), prompts)
    text = (prompts / "saliency.md").read_text() + "\nJudge carefully.\n"
    (prompts / "saliency.md").write_text(text)
    work = tmp_path / "work"
    shutil.copytree(resolve("tiny://qwen2_5_vl"), work / "models" / "vlm")
    specs = stages_copy(
        tmp_path / "stages",
        order=["ingest", "tag", "ground", "select", "saliency", "render", "export"],
        edits={"saliency": ('models: {vlm: "tiny://qwen2_5_vl"}', "models: {vlm: models/vlm}")},
    )
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    monkeypatch.setenv("GROUNDEDIT_PROMPTS_DIR", str(prompts))
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    run_pipeline(plain_folder, out, executor="ray")
    want = hashlib.sha256(text.encode()).hexdigest()[:16]
    exported = shard_reader(out)
    assert exported, "plain photos reach the shards"
    for members in exported.values():
        doc = json.loads(members["json"])
        (saliency,) = [p for p in doc["provenance"] if p["stage"] == "saliency"]
        assert saliency["prompt_hash"] == want
        assert saliency["models"] == ["models/vlm"]
        assert_candidates_from_tag_and_ground(doc)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_gpu_stage_without_gpus_fails_before_any_work(
    executor, ray_cluster, spine_stages, sa1b_input, tmp_path, run_pipeline, stages_copy, monkeypatch
):
    from groundedit.engine.pipeline import PipelineError

    specs = stages_copy(
        tmp_path / "stages",
        order=["ingest", "select", "render", "export"],
        edits={"render": ("  tiny:\n    workers: 2", "  tiny:\n    workers: 2\n    resources: {gpus: 1}")},
    )
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match=r"render.*GPU.*gpus: 0"):
        run_pipeline(sa1b_input, out, executor=executor)
    assert not (out / "data").exists(), "nothing was run"


KILLS = [
    "render:artifacts-committed@2",  # mid-unit: its artifact tar renamed, its Parquet not yet
    "export:part-written@2",  # parallel export: a unit's part written, its commit not yet
    "export:shard-written@2",  # a shard written by a Ray task, before the task returns
]


@pytest.mark.slow
def test_ray_workers_killed_mid_work_cost_nothing(
    ray_cluster, spine_stages, spine_reference, sa1b_input, tmp_path, run_pipeline, same_output, monkeypatch
):
    """SIGKILL inside Ray workers (once at each point): Ray restarts the worker and retries its
    unit or task; the run finishes with the same output as an uninterrupted one."""
    from groundedit.formats.commits import CommitStore

    killed = tmp_path / "killed"
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    monkeypatch.setenv("GROUNDEDIT_CRASH_AT", ",".join(KILLS))
    monkeypatch.setenv("GROUNDEDIT_CRASH_ONCE", str(killed))
    out = tmp_path / "run"
    summary = run_pipeline(sa1b_input, out, executor="ray")
    for point in KILLS:
        name = point.split("@")[0].replace(":", "-")
        assert (tmp_path / f"killed.{name}").exists(), f"a worker reached {point} and was killed"
    assert not summary.quarantined
    same_output(out, spine_reference)
    store = CommitStore(out)
    for stage in ("render", "export"):
        assert not [u for u in store.units(stage) if store.read_failure(stage, u)], "no attempt left open"


@pytest.mark.slow
def test_the_driver_killed_under_ray_resumes(
    ray_address, spine_stages, spine_reference, sa1b_input, tmp_path, cli, same_output, run_pipeline
):
    """The driver is a real process killed at a ticket; the resume runs in this one, on the same cluster."""
    import signal

    out = tmp_path / "run"
    args = [
        "run",
        "--input",
        str(sa1b_input),
        "--out",
        str(out),
        "--profile",
        "tiny",
        "--ray-address",
        ray_address,
    ]
    env = {"GROUNDEDIT_STAGES_DIR": str(spine_stages)}
    crashed = cli(*args, env={**env, "GROUNDEDIT_CRASH_AT": "run:ticket-done@2"}, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    run_pipeline(sa1b_input, out, executor="ray", stages=spine_stages)
    same_output(out, spine_reference)


def test_the_stream_reads_tickets_only_as_the_window_needs_them(
    ray_cluster, sa1b_input, tmp_path, stages_copy, monkeypatch
):
    """12 units in plan parts of 2 (a part is 512 units in a real plan), at most 1 unit between
    the first stage and the driver: the source may have read at most the window and two parts more
    than the driver took, whatever Ray Data's scheduler did while the stages' actors started (its
    liveness rule dispatches past any backpressure policy then); every ticket arrives once."""
    import groundedit.engine.planning as planning
    from groundedit.engine.executors import RayExecutor
    from groundedit.engine.pipeline import Pipeline
    from groundedit.formats.runconfig import RunConfig

    specs = stages_copy(
        tmp_path / "stages",
        order=["ingest", "select", "render", "export"],
        edits={"ingest": ("unit_size: 4", "unit_size: 1")},
    )
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    monkeypatch.setattr(planning, "UNITS_PER_PART", 2)
    ex = RayExecutor()
    try:
        config = RunConfig(out=tmp_path / "run", input=sa1b_input, seed=0, profile="tiny")
        summary = Pipeline(config, ex, window=1).run()
    finally:
        ex.close()
    assert [summary.stages[s].units_planned for s in ("ingest", "export")] == [12, 12]
    assert summary.stages["export"].units_ran == 12
    counts = ex.ticket_counts
    assert counts["read"] == 12 and counts["consumed"] >= 11
    assert counts["most_ahead"] <= 1 + 2 * 2, counts


def test_outputs_are_written_by_one_long_lived_writer(ray_cluster, tmp_path):
    """Every call goes to the same worker process (not a task each: a fresh process per shard); a
    writer killed mid-call is restarted and the call retried; closing the executor ends it."""
    import os

    from groundedit.engine.executors import RayExecutor
    from groundedit.engine.worker import run_with_env
    from groundedit.faults import crash_point

    ex = RayExecutor()
    try:
        pids = {ex.call(os.getpid) for _ in range(3)}
        assert len(pids) == 1 and os.getpid() not in pids
        env = {"GROUNDEDIT_CRASH_AT": "test:writer", "GROUNDEDIT_CRASH_ONCE": str(tmp_path / "killed")}
        assert ex.call(run_with_env, env, crash_point, "test:writer") is None
        assert (tmp_path / "killed.test-writer").exists(), "the writer was killed once"
        (restarted,) = {ex.call(os.getpid) for _ in range(2)}
        assert restarted not in pids
        writer = ex._writer
    finally:
        ex.close()
    import ray

    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(writer.run.remote(os.getpid))
