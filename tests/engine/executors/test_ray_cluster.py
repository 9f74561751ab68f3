"""Runs on a real multi-node Ray cluster started with the stock ``ray start`` CLI, token auth on
(``ray_nodes``, tests/engine/executors/conftest.py): joining it, losing a node mid-run, a node that cannot
see the run folder, and the one-line errors of addresses that cannot be joined."""

from __future__ import annotations

import re
import subprocess
import time

import psutil
import pytest

from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import StageSummary

SPINE = ("ingest", "select", "render", "export")
WAIT_S = 300  # hang guard for waits on a run (never a timing assertion)


def _args(inp, out) -> list[str]:
    return ["run", "--input", str(inp), "--out", str(out), "--profile", "tiny"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _nodes(out, stage: str) -> set[str]:
    return {c.node for c in CommitStore(out).read_all(stage).values()}


def _wait_for(condition, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_run_joins_a_cluster_started_with_ray_start(
    ray_nodes, spine_stages, spine_reference, sa1b_input, tmp_path, cli, same_output
):
    out = tmp_path / "run"
    env = {**ray_nodes.env, "GROUNDEDIT_STAGES_DIR": str(spine_stages)}
    proc = cli(*_args(sa1b_input, out), "--ray-address", ray_nodes.address, env=env, timeout=WAIT_S)
    lines = _lines(proc.stderr)
    joined = [line for line in lines if "Ray cluster" in line]
    assert len(joined) == 1, lines
    assert re.fullmatch(
        rf"note: joined the Ray cluster at \S+:{ray_nodes.port} \(2 nodes, 2 CPUs, 0 GPUs\)", joined[0]
    )
    assert not [line for line in lines if "core_worker" in line or line.startswith("[")], (
        "Ray's native log lines stay out of the terminal"
    )
    assert "max_restarts > 0" in (out / "logs" / "ray-driver.log").read_text(), "they go to the run's log"
    same_output(out, spine_reference)
    # the head has no CPUs: every unit was done on the worker node, and its commits say so
    worker = ray_nodes.worker.short_id()
    for stage in SPINE:
        assert {n.split("/")[-1] for n in _nodes(out, stage)} == {worker}, stage
    table = cli("status", "--out", str(out), env=env).stdout
    (row,) = [line for line in table.splitlines() if f"/{worker}" in line]
    assert [cell.strip() for cell in row.split("│")[2:-1]] == ["4"] * len(SPINE), "status: units per node"


@pytest.mark.slow
def test_a_node_that_cannot_see_the_run_folder_stops_the_run_before_any_work(
    ray_nodes, folder_hiding, spine_stages, sa1b_input, tmp_path, cli
):
    """A node that is not on the shared filesystem: it runs in a mount namespace of its own where
    the folder holding --out is an empty tmpfs. The probe the driver writes there is not found."""
    shared = tmp_path / "shared"
    shared.mkdir()
    blind = ray_nodes.add_node("blind", cpus=1, hide=shared)
    out = shared / "run"
    try:
        blind_id = blind.short_id()
        env = {**ray_nodes.env, "GROUNDEDIT_STAGES_DIR": str(spine_stages)}
        proc = cli(
            *_args(sa1b_input, out), "--ray-address", ray_nodes.address, env=env, check=False, timeout=WAIT_S
        )
    finally:
        blind.stop()
    lines = _lines(proc.stderr)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]], lines
    assert re.match(
        rf"error: node \S+/{blind_id} cannot read {re.escape(str(out / 'manifests'))}/", errors[0]
    )
    assert "shared filesystem" in errors[0]
    assert not (out / "data").exists() and not (out / "manifests" / "plan").exists(), "no work was done"


@pytest.mark.slow
@pytest.mark.parametrize(
    "token, says",
    [
        (None, "no token was found here"),
        ("not-the-clusters-token", "rejected this machine's authentication token"),
    ],
)
def test_joining_without_the_clusters_token_is_one_line_with_the_fix(
    ray_nodes, token, says, spine_stages, sa1b_input, tmp_path, cli
):
    env = {
        **ray_nodes.env,
        "GROUNDEDIT_STAGES_DIR": str(spine_stages),
        "RAY_AUTH_TOKEN_PATH": None,
        "RAY_AUTH_TOKEN": token,
        "HOME": str(tmp_path),  # no ~/.ray/auth_token
    }
    proc = cli(
        *_args(sa1b_input, tmp_path / "run"),
        "--ray-address",
        ray_nodes.address,
        env=env,
        check=False,
        timeout=WAIT_S,
    )
    lines = _lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: the Ray cluster at ") and says in lines[0]
    assert "`ray get-auth-token` on the head" in lines[0] and "~/.ray/auth_token" in lines[0]


@pytest.mark.slow
def test_a_cluster_without_token_auth_is_joined_by_a_machine_that_has_a_token(
    ray_head_without_auth, tmp_path, cli
):
    """This machine has a token (RAY_AUTH_TOKEN_PATH), so the ``ray`` CLI's rule turns token mode on;
    a cluster started with RAY_AUTH_MODE=disabled accepts it."""
    from groundedit.fixtures import write_sa1b_fixture

    inp = tmp_path / "in"
    write_sa1b_fixture(inp, images=2, images_per_tar=2, seed=2)
    out = tmp_path / "run"
    head = ray_head_without_auth
    (tmp_path / "token").write_text("a-token-this-cluster-never-asks-for")
    env = {**head.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}
    proc = cli(
        "run",
        "--stage",
        "ingest",
        *_args(inp, out)[1:],
        "--ray-address",
        head.address,
        env=env,
        timeout=WAIT_S,
    )
    assert re.search(
        rf"note: joined the Ray cluster at \S+:{head.port} \(1 node, 1 CPUs, 0 GPUs\)", proc.stderr
    )
    assert {n.split("/")[-1] for n in _nodes(out, "ingest")} == {head.head.short_id()}


def test_a_dead_address_is_one_error_line(spine_stages, sa1b_input, tmp_path, cli):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    proc = cli(
        *_args(sa1b_input, tmp_path / "run"),
        "--ray-address",
        f"127.0.0.1:{port}",
        env={"RAY_ADDRESS": None, "GROUNDEDIT_STAGES_DIR": str(spine_stages)},
        check=False,
        timeout=WAIT_S,
    )
    assert proc.returncode == 1
    assert _lines(proc.stderr) == [f"error: no Ray cluster at 127.0.0.1:{port}: Connection refused"]


@pytest.mark.slow
def test_losing_a_node_mid_run_costs_nothing(
    ray_nodes, spine_stages, spine_reference, sa1b_input, tmp_path, cli, cli_in_background, same_output
):
    """A stage worker freezes inside a unit (its files written, its commit not yet), and the whole
    node it runs on is then killed, as a lost machine. Ray restarts the stage's actor on the other
    node and the unit is redone there: the run finishes, a rerun has nothing left to do, and the
    output is an uninterrupted run's. The cluster is joined through RAY_ADDRESS=auto and the
    address `ray start` recorded."""
    extra = ray_nodes.add_node("extra")  # two worker nodes, so either may be lost
    out = tmp_path / "run"
    env = {
        **ray_nodes.env,
        "GROUNDEDIT_STAGES_DIR": str(spine_stages),
        "RAY_ADDRESS": "auto",
        "RAY_TMPDIR": str(ray_nodes.root),  # where the head recorded its address
    }
    freeze = {
        "GROUNDEDIT_CRASH_AT": "render:unit-written",
        "GROUNDEDIT_CRASH_SIGNAL": "STOP",
        "GROUNDEDIT_CRASH_ONCE": str(tmp_path / "frozen"),
    }
    workers = [ray_nodes.worker, extra]
    try:
        proc = cli_in_background(*_args(sa1b_input, out), env={**env, **freeze}, log=tmp_path / "run.log")
        try:
            _wait_for((tmp_path / "frozen.render-unit-written").exists, "a worker froze", proc)

            def frozen_node():
                for node in workers:
                    for p in node.processes():
                        try:
                            if p.status() == psutil.STATUS_STOPPED:
                                return node
                        except psutil.Error:
                            continue
                return None

            _wait_for(lambda: frozen_node() is not None, "the frozen worker to stop", proc)
            lost = frozen_node()
            lost_id = lost.short_id()
            lost.kill()
            rc = proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        log = (tmp_path / "run.log").read_text()
        assert rc == 0, log[-3000:]
        assert re.search(rf"joined the Ray cluster at \S+:{ray_nodes.port} \(3 nodes", log), log[-3000:]
        store = CommitStore(out)
        assert not [u for s in SPINE for u in store.units(s) if store.read_failure(s, u)], "no attempt open"
        # nothing is left to do, whichever executor looks (the local one needs no cluster)
        rerun = cli(*_args(sa1b_input, out), "--executor", "local", env=env, timeout=WAIT_S)
        assert "exported 12 samples" in rerun.stderr
        assert {s: StageSummary.load(out, s).units_ran for s in SPINE} == dict.fromkeys(SPINE, 0)
        same_output(out, spine_reference)
        survivor = next(n for n in workers if n is not lost).short_id()
        render = {n.split("/")[-1] for n in _nodes(out, "render")}
        assert survivor in render and render <= {survivor, lost_id}
    finally:
        extra.stop()
