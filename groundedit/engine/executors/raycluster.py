"""Which Ray cluster a run uses: a fresh local one, or a running cluster the user names.

No address (no ``--ray-address``, no ``RAY_ADDRESS``) starts a fresh local cluster for the run
(``ray.init(address="local")``), whatever else runs on the machine: Ray's own default would join
the cluster recorded in ``<ray temp dir>/ray_current_cluster``, even one that died long ago.
``HOST:PORT`` or ``auto`` joins a running cluster, checked before ``ray.init`` so that each way it
can fail is one line within seconds instead of a minute of Ray's retries and a traceback:
1. the address resolves the way Ray resolves it (``auto``: ``RAY_ADDRESS``, then the recorded
   cluster, then any Ray head running here);
2. its port accepts a TCP connection (5 s);
3. its GCS answers (20 s) and lists its live nodes, asked first without a token: a cluster that
   wants one says so, and then the token is used where Ray finds one (``RAY_AUTH_TOKEN``,
   ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), as ``ray start`` uses it; ``RAY_AUTH_MODE``,
   when set, is kept;
4. this machine runs one of those nodes (a driver attaches to a local raylet), found the way Ray
   finds it (the raylet processes running here).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass

from groundedit.engine.executors.base import ExecutorError

TCP_TIMEOUT_S = 5.0
GCS_TIMEOUT_S = 20.0
TOKEN_SOURCES = "RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token"


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a run uses, for the one line the CLI prints."""

    address: str | None  # None: a local cluster started for this run
    nodes: int
    cpus: float
    gpus: float

    def line(self) -> str:
        size = f"{_n(self.cpus)} CPUs, {_n(self.gpus)} GPUs"
        if self.address is None:
            return f"started a local Ray cluster for this run ({size}); it stops when the run ends"
        plural = "s" if self.nodes != 1 else ""
        return f"joined the Ray cluster at {self.address} ({self.nodes} node{plural}, {size})"


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def start_local(num_cpus: int | None, init_kwargs: dict) -> None:
    """A fresh single-node cluster owned by this process (never a running one)."""
    if "ray" not in sys.modules:
        # Ray's default for a new local cluster, said explicitly (and before Ray reads its config at
        # import): token auth stays on without the notice Ray prints on every start.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    ray.init(address="local", num_cpus=num_cpus, **init_kwargs)


def join(address: str, init_kwargs: dict) -> str:
    """Connect to the running cluster at ``address`` (``HOST:PORT`` or ``auto``) after checking it
    can work; returns the address joined. Raises :class:`ExecutorError` with one line otherwise."""
    if address.startswith("ray://"):
        raise ExecutorError(
            f"--ray-address {address}: Ray Client addresses (ray://) are not supported; run groundedit "
            "on a node of the cluster (the head) and give the head's HOST:PORT"
        )
    import ray
    from ray._private import services

    resolved, origin = _resolve(address)
    shown = resolved if address == "auto" else address
    host, port = services.parse_address(resolved)
    try:
        socket.create_connection((host, int(port)), timeout=TCP_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise ExecutorError(f"no Ray cluster at {shown}{origin}: {why}") from None
    alive = _nodes_with_matching_auth(resolved, shown + origin)
    if not set(services.find_node_ids()) & alive:
        raise ExecutorError(
            f"this machine runs no node of the Ray cluster at {resolved}: run groundedit on the head "
            f"(or on a machine joined with `ray start --address {resolved}`)"
        )
    ray.init(address=resolved, **init_kwargs)
    return resolved


def describe(address: str | None) -> ClusterInfo:
    import ray

    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address, nodes, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)))


def node_label(node_id: str, ip: str) -> str:
    """How a node is named in commits, status, the report and errors: its IP and the start of
    Ray's node id (two nodes on one machine share the IP)."""
    return f"{ip}/{node_id[:8]}"


def _resolve(address: str) -> tuple[str, str]:
    """Ray's own resolution of ``address``, and a note on where it came from (for errors)."""
    from ray._private import services, utils

    recorded = utils.read_ray_address()
    try:
        resolved = services.canonicalize_bootstrap_address(address)
    except ConnectionError:
        raise ExecutorError(
            "--ray-address auto: no running Ray cluster found on this machine (start one with "
            "`ray start --head`, or give HOST:PORT)"
        ) from None
    except ValueError:
        raise ExecutorError(f"--ray-address {address!r} is not HOST:PORT or 'auto'") from None
    origin = ""
    from_record = recorded and resolved == services.canonicalize_bootstrap_address(recorded)
    if address == "auto" and from_record and not os.environ.get("RAY_ADDRESS"):
        from ray._common.utils import get_ray_address_file

        origin = (
            f" (the address an earlier `ray start` recorded in {get_ray_address_file(None)}; "
            "`ray stop` clears it)"
        )
    return resolved, origin


class _Unauthenticated(Exception):
    pass


def _nodes_with_matching_auth(address: str, shown: str) -> set[str]:
    """The cluster's live nodes, with this process's authentication set to what the cluster uses:
    a mode set in ``RAY_AUTH_MODE`` is kept; unset, a first request without a token tells whether
    the cluster wants one, and then the token is used where Ray finds one (``ray start``'s rule). A
    driver must match its cluster: a token-mode driver on a cluster without auth (which ignores
    tokens) rejects its own workers' calls, and its actors die at start."""
    mode = os.environ.get("RAY_AUTH_MODE")
    try:
        return _alive_nodes(address, shown)
    except _Unauthenticated:
        if mode is not None:
            raise ExecutorError(_auth_hint(shown, token_mode=mode.lower() == "token")) from None
    if not _use_token_if_found():
        raise ExecutorError(_auth_hint(shown, token_mode=False))
    try:
        return _alive_nodes(address, shown)
    except _Unauthenticated:
        raise ExecutorError(_auth_hint(shown, token_mode=True)) from None


def _use_token_if_found() -> bool:
    """Token mode for this process if Ray finds a token (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), through Ray's own function for it."""
    from ray._private.authentication import authentication_token_setup as setup
    from ray.exceptions import AuthenticationError

    # Ray's notice that token auth is now on would print over the run's own lines: muted here
    notices = logging.getLogger(setup.__name__)
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        return setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except AuthenticationError as e:  # a token source is named but unreadable (e.g. a missing file)
        reason = str(e).split(". Note:")[0].strip().rstrip(".")
        raise ExecutorError(f"cannot read the Ray auth token: {reason}") from None
    finally:
        notices.setLevel(level)


def _alive_nodes(address: str, shown: str) -> set[str]:
    """Ids (hex) of the cluster's live nodes, asked of its GCS in a thread bounded by
    ``GCS_TIMEOUT_S`` (Ray's client retries for ~40 s when nothing Ray-like answers). Raises
    :class:`_Unauthenticated` when the cluster refuses this process's (lack of) token."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    result: dict = {}

    def ask() -> None:
        try:
            infos = GcsClient(address=address).get_all_node_info(timeout=GCS_TIMEOUT_S)
            result["alive"] = {info.node_id.hex() for info in infos.values() if info.state == 0}
        except Exception as e:  # reported by the caller
            result["error"] = e

    t = threading.Thread(target=ask, name="ray-cluster-probe", daemon=True)
    t.start()
    t.join(GCS_TIMEOUT_S + 5)
    error = result.get("error")
    if isinstance(error, AuthenticationError):
        raise _Unauthenticated()
    if "alive" not in result:
        why = str(error).splitlines()[0] if error else f"no answer within {GCS_TIMEOUT_S:.0f} s"
        raise ExecutorError(
            f"no Ray cluster answers at {shown}: {why} (is it the head's GCS port, "
            "the one `ray start --head --port` was given?)"
        )
    return result["alive"]


def _auth_hint(address: str, token_mode: bool) -> str:
    from ray._raylet import AuthenticationTokenLoader

    get = "`ray get-auth-token` on the head prints it"
    if token_mode and AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return (
            f"the Ray cluster at {address} rejected this machine's authentication token: use the "
            f"head's token ({get}) in {TOKEN_SOURCES}"
        )
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return (
            f"the Ray cluster at {address} requires token authentication and RAY_AUTH_MODE=disabled "
            f"is set here: unset it and provide the head's token ({get}) in {TOKEN_SOURCES}"
        )
    return (
        f"the Ray cluster at {address} requires token authentication and no token was found here: "
        f"provide the head's token ({get}) in {TOKEN_SOURCES}"
    )
