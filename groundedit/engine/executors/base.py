"""The executor protocol: where stage workers run and how tickets stream through them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from groundedit.engine.planning import PlanReader
from groundedit.engine.tickets import Ticket
from groundedit.engine.worker import StageJob


class ExecutorError(RuntimeError):
    """The executor cannot start (e.g. the Ray cluster named cannot be joined); one line saying why."""


class Executor(Protocol):
    name: str

    def start(self) -> str | None:
        """Start (or connect) what runs the work; return one line saying where it runs, or None.
        Raises :class:`ExecutorError`."""
        ...

    def capacity(self, gpus_needed: bool) -> dict[str, float]:
        """CPUs and GPUs the executor can use (``{"CPU": n, "GPU": m}``); GPUs are counted only
        when ``gpus_needed`` (counting may load a GPU runtime)."""
        ...

    def stream(self, jobs: list[StageJob], plan: PlanReader, window: int) -> Iterator[Ticket]:
        """Pass every ticket of ``plan`` through the ``jobs``' stages in order and yield it when it
        leaves the last one (in any order). Each stage runs on its own long-lived workers; at most
        ``window`` units are between the first stage and the consumer at any time, and tickets are
        read from the plan as the stream needs them (memory does not grow with the plan)."""
        ...

    def on_every_node(self, fn: Callable, *args) -> dict[str, object]:
        """``fn(*args)`` once on every node that may run work, keyed by the node's name."""
        ...

    def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` where workers run and return its result (the final outputs' writers,
        which are idempotent: a call may be retried). Calls of one run share one long-lived worker."""
        ...

    def close(self) -> None:
        """Release the executor's resources (a Ray cluster it started)."""
        ...
