"""A real multi-node Ray cluster, started the way users start one: the stock ``ray start`` CLI.

A head (no CPUs: the driver's node, as on many clusters) and one worker node, token authentication
on (a session token file, ``RAY_AUTH_TOKEN_PATH``, so ``~/.ray`` is never touched), each node with
its own temp dir under one short folder (Ray's socket paths must stay under 108 bytes). Each node is
a ``ray start --block`` process leading its own session: stopping it is a SIGTERM to that pid (it
stops its node's processes), killing a node is a SIGKILL to every process of that session (a lost
machine), and nothing else on the machine is touched (no ``ray stop``: other Ray clusters run here).
The head's health checks run every second, so a killed node is declared dead in ~5 s, not ~15 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

RAY = str(Path(sys.executable).parent / "ray")
READY = "block forever"  # what `ray start --block` prints once its node is up
START_TIMEOUT_S = 120


def _env(changes: dict) -> dict[str, str]:
    merged = {**os.environ, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    """One ``ray start --block`` process and the session it leads."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.proc.pid:
                    found.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    def node_id(self) -> str:
        """Ray's id of this node (the raylet's ``--node_id``, as Ray's own tools find it)."""
        for p in self.processes():
            try:
                for arg in p.cmdline():
                    if arg.startswith("--node_id="):
                        return arg.split("=", 1)[1]
            except psutil.Error:
                continue
        raise AssertionError(f"no raylet found for node {self.name}")

    def short_id(self) -> str:
        """The part of the node id in groundedit's node names (``IP/<short id>``)."""
        return self.node_id()[:8]

    def kill(self) -> None:
        """The machine is lost: SIGKILL to every process of the node's session."""
        for p in self.processes():
            try:
                p.kill()
            except psutil.Error:
                continue
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=60)
        self.kill()  # whatever outlived the graceful stop


class RayNodes:
    """A cluster of ``ray start`` nodes: ``address``, ``env`` for clients, ``add_node()``,
    ``heal()``. ``auth``: token authentication (a token file, as a user's RAY_AUTH_TOKEN_PATH)."""

    def __init__(self, root: Path, auth: bool = True, head_cpus: int = 0, workers: int = 1):
        self.root = root
        self.auth = auth
        self.token = root / "token"
        self.token.write_text(secrets.token_hex(24))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        # where `ray start --head` records the cluster, read by `ray.init()` / "auto" when a
        # client's RAY_TMPDIR is `root`
        self.head_temp = root / "ray"
        self.head = self._start(
            "head",
            [
                "--head",
                f"--port={self.port}",
                f"--num-cpus={head_cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--system-config="
                + json.dumps({"health_check_period_ms": 1000, "health_check_failure_threshold": 5}),
                f"--temp-dir={self.head_temp}",
            ],
        )
        self.worker = self.add_node("n1") if workers else None

    @property
    def env(self) -> dict:
        """What a client needs: the token (as a user's RAY_AUTH_TOKEN_PATH), and none of this
        process's Ray settings (the in-process test cluster sets RAY_AUTH_MODE)."""
        return {
            "RAY_AUTH_TOKEN_PATH": str(self.token),
            "RAY_AUTH_TOKEN": None,
            "RAY_AUTH_MODE": None,
            "RAY_ADDRESS": None,
        }

    def _start(self, name: str, args: list[str], wrap: list[str] | None = None) -> Node:
        log = self.root / f"{name}.log"
        env = _env(
            {
                "RAY_AUTH_MODE": "token" if self.auth else "disabled",
                "RAY_AUTH_TOKEN_PATH": str(self.token),
                "RAY_AUTH_TOKEN": None,
                "RAY_ADDRESS": None,
                "RAY_TMPDIR": str(self.root),
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM stops a node now, not in 30 s
            }
        )
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                [*(wrap or []), RAY, "start", "--block", *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        node = Node(name, proc, log)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY not in log.read_text(errors="replace"):
            if not node.alive() or time.monotonic() > deadline:
                node.stop()
                raise RuntimeError(f"`ray start` of node {name} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return node

    def add_node(self, name: str, cpus: int = 2, hide: Path | None = None) -> Node:
        """A worker node; ``hide``: a folder this node sees empty (an empty tmpfs mounted over it in
        a mount namespace of its own), as a machine without the shared filesystem would."""
        args = [f"--address={self.address}", f"--num-cpus={cpus}", f"--temp-dir={self.root / name}"]
        wrap = None
        if hide is not None:
            wrap = [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount -t tmpfs none "$0" && exec "$@"',
            ]
            wrap.append(str(hide))
        return self._start(name, args, wrap)

    def heal(self) -> None:
        """Replace the session's worker node if a test lost it."""
        if not self.worker.alive():
            self.worker.stop()
            self.worker = self.add_node(f"n{len(self.nodes) + 1}")

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture(scope="session")
def folder_hiding() -> None:
    """Skips unless this machine lets a process mount a tmpfs in a mount namespace of its own (root,
    or CAP_SYS_ADMIN): how a test gives one node another view of the disk."""
    probe = tempfile.mkdtemp(prefix="ge-ns-")
    try:
        cmd = ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "none", probe]
        ok = shutil.which("unshare") is not None and subprocess.run(cmd, capture_output=True).returncode == 0
    finally:
        os.rmdir(probe)
    if not ok:
        pytest.skip("needs `unshare -m` and mount (root or CAP_SYS_ADMIN) to give a node another view")


@pytest.fixture(scope="session")
def same_output(shard_reader):
    """``same_output(out, reference)``: the run's shards (byte for byte) and rejected rows are the
    reference's, with no rejected row twice and no temp file left."""

    def check(out: Path, reference: Path) -> None:
        import pyarrow.parquet as pq

        assert shard_reader(out) == shard_reader(reference)
        names = sorted(p.name for p in (reference / "shards").glob("*.tar"))
        assert sorted(p.name for p in (out / "shards").glob("*.tar")) == names
        for name in names:
            assert (out / "shards" / name).read_bytes() == (reference / "shards" / name).read_bytes()
        rejected = sorted(pq.read_table(out / "rejected.parquet").column("key").to_pylist())
        assert rejected == sorted(pq.read_table(reference / "rejected.parquet").column("key").to_pylist())
        assert len(set(rejected)) == len(rejected), "no rejected row twice"
        assert not list(out.rglob(".*.tmp-*")), "no temp files left behind"

    return check


@pytest.fixture(scope="session")
def ray_nodes_session():
    root = Path(tempfile.mkdtemp(prefix="ge-ray-", dir="/tmp"))
    cluster = None
    try:
        cluster = RayNodes(root)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ray_nodes(ray_nodes_session) -> RayNodes:
    """The session's multi-node cluster (head + one worker node), its worker alive."""
    ray_nodes_session.heal()
    return ray_nodes_session


@pytest.fixture
def ray_head_without_auth():
    """A one-node cluster started with ``RAY_AUTH_MODE=disabled`` (1 CPU)."""
    root = Path(tempfile.mkdtemp(prefix="ge-ray-", dir="/tmp"))
    cluster = None
    try:
        cluster = RayNodes(root, auth=False, head_cpus=1, workers=0)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)
