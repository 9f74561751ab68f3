"""The run folder lock: one live writer; a lock left by a dead run is taken over."""

from __future__ import annotations

import json

import pytest

from groundedit.engine.runlock import RunLocked, lock_path, run_lock


def test_second_holder_is_refused_with_the_first_named(tmp_path):
    with (
        run_lock(tmp_path),
        pytest.raises(RunLocked, match=r"in use by another groundedit run \(pid \d+ on "),
        run_lock(tmp_path),
    ):
        pass
    with run_lock(tmp_path):  # released on exit
        pass


def test_lock_left_by_a_dead_run_is_taken_over(tmp_path):
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_text(json.dumps({"pid": 999999, "host": "h", "started": "then"}))
    seen = []
    with run_lock(tmp_path, on_takeover=seen.append):
        holder = json.loads(lock_path(tmp_path).read_text())
    assert seen == ["pid 999999 on h, started then"]
    assert holder["pid"] != 999999
    assert lock_path(tmp_path).read_text() == ""  # a clean exit leaves nothing to take over


def test_clean_exit_leaves_nothing_to_take_over(tmp_path):
    with run_lock(tmp_path):
        pass
    seen = []
    with run_lock(tmp_path, on_takeover=seen.append):
        pass
    assert seen == []


def test_a_busy_folder_is_refused_before_the_executor_starts(spine_stages, sa1b_input, tmp_path, monkeypatch):
    """Starting Ray (or joining a cluster) costs seconds and prints lines: a folder another run
    holds is refused first."""
    from groundedit.engine.executors import LocalExecutor
    from groundedit.engine.pipeline import Pipeline
    from groundedit.formats.runconfig import RunConfig

    class Recording(LocalExecutor):
        started = False

        def start(self):
            Recording.started = True

    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    out = tmp_path / "run"
    config = RunConfig(out=out, input=sa1b_input, seed=0, profile="tiny")
    with run_lock(out), pytest.raises(RunLocked):
        Pipeline(config, Recording()).run()
    assert not Recording.started
