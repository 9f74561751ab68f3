"""Choosing and checking the Ray cluster, without starting one: addresses that cannot be joined are
one line, and the default never joins a cluster that happens to be recorded."""

from __future__ import annotations

import socket

import pytest

from groundedit.engine.executors import ExecutorError, RayExecutor
from groundedit.engine.executors.raycluster import ClusterInfo, join


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_client_addresses_are_refused_with_what_to_do_instead():
    with pytest.raises(ExecutorError, match=r"ray://.*not supported.*run groundedit on a node"):
        join("ray://head:10001", {})


def test_an_address_that_is_not_host_port_is_one_line():
    with pytest.raises(ExecutorError, match=r"--ray-address 'no-port-here' is not HOST:PORT or 'auto'"):
        join("no-port-here", {})


def test_auto_with_only_a_stale_recorded_cluster_names_the_record(tmp_path, monkeypatch):
    """``ray start`` left its address in ``<ray temp dir>/ray_current_cluster`` and that cluster is
    gone: ``auto`` fails at once and says where the address came from."""
    from ray._private import services

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", frozenset)  # no Ray head running here
    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    port = _dead_port()
    record.write_text(f"127.0.0.1:{port}")
    with pytest.raises(ExecutorError) as e:
        join("auto", {})
    msg = str(e.value)
    assert msg.startswith("no Ray cluster at ") and f":{port} " in msg, msg
    assert str(record) in msg and "`ray stop` clears it" in msg and msg.endswith("Connection refused")


def test_auto_without_any_cluster_says_how_to_start_one(tmp_path, monkeypatch):
    from ray._private import services

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", frozenset)
    with pytest.raises(ExecutorError, match=r"no running Ray cluster found.*`ray start --head`"):
        join("auto", {})


@pytest.mark.parametrize(
    "given, env, expected",
    [(None, None, None), (None, "local", None), (None, "h:1", "h:1"), ("a:2", "h:1", "a:2")],
)
def test_the_address_is_the_flag_then_ray_address_else_none(given, env, expected, monkeypatch):
    """None means a fresh local cluster (``ray.init(address="local")``), never Ray's default of
    joining the recorded one."""
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert RayExecutor(address=given).address == expected


def test_the_line_says_which_cluster():
    assert ClusterInfo("10.0.0.1:6379", 3, 96.0, 8.0).line() == (
        "joined the Ray cluster at 10.0.0.1:6379 (3 nodes, 96 CPUs, 8 GPUs)"
    )
    assert ClusterInfo("10.0.0.1:6379", 1, 0.5, 0.0).line().endswith("(1 node, 0.5 CPUs, 0 GPUs)")
    assert ClusterInfo(None, 1, 2.0, 0.0).line() == (
        "started a local Ray cluster for this run (2 CPUs, 0 GPUs); it stops when the run ends"
    )


def test_an_unreadable_token_file_is_one_line(tmp_path, monkeypatch):
    """RAY_AUTH_TOKEN_PATH naming a missing file: Ray's loader raises; the run says so in one line
    (it used to end in a traceback when the cluster asked for a token)."""
    from groundedit.engine.executors.raycluster import _use_token_if_found

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ExecutorError) as e:
        _use_token_if_found()
    assert str(e.value) == (
        "cannot read the Ray auth token: RAY_AUTH_TOKEN_PATH is set but file cannot be opened or is "
        f"empty: {tmp_path / 'missing'}"
    )
