"""Ray executor: the stages of a wave stream into each other through Ray Data.

The cluster is a running one named by ``--ray-address`` / ``RAY_ADDRESS``, or a fresh local one
(:mod:`raycluster` checks and joins it). Each stage worker records its node in its commits.
Tickets (a few hundred bytes per unit) are a Ray Data dataset, one block per unit; each stage is a
``map_batches`` over it with an autoscaling actor pool (``ActorPoolStrategy(1, workers)``, the
spec's CPUs and GPUs per actor), so a unit moves on as soon as a stage commits it and every stage
keeps its models loaded for the whole run. Workers write their own commits; the driver only reads
tickets as they come out. An actor that dies is restarted by Ray and its unit retried (the worker
counts attempts and quarantines a unit that keeps killing it).

Tickets are read from the plan's part files (512 units each) as the stream needs them, never all
at once: the dataset starts from the list of parts and a one-task-at-a-time map reads a part's
tickets, one block per unit (Ray Data cuts blocks by size; we set the size to one byte). A small
actor (:class:`_TicketGate`) holds each part back until the consumer is within ``window`` + one
part of it, so at most ``window`` + two parts of tickets exist at any time, whatever Ray Data's
scheduler does (its liveness rules may dispatch past any backpressure policy, e.g. while actors
start). The driver's memory therefore does not grow with the plan.

Ray Data's backpressure counts object-store bytes, and tickets are tiny (the data stays on disk),
so we add one policy to Ray Data's list: at most ``window`` units between the first stage and the
consumer. That bounds how far cheap stages run ahead of expensive ones and lets the first shards
appear while the input is still being read.

The final outputs (shards, rejected parts) are written by one long-lived writer actor per run
(:meth:`RayExecutor.call`), not a task each: a task starts a fresh worker process. With
:mod:`raycluster`, the only modules that import Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import groundedit
from groundedit.engine.executors import raycluster
from groundedit.engine.executors.base import ExecutorError
from groundedit.engine.planning import PlanReader
from groundedit.engine.tickets import Ticket
from groundedit.engine.worker import StageJob, StageWorker
from groundedit.formats.commits import set_node_name

log = logging.getLogger(__name__)
NODE_TASK_TIMEOUT_S = 120  # a task pinned to each node (the storage check) must start and finish


@contextlib.contextmanager
def _import_root_as_cwd():
    """Ray puts the driver's working directory first on every worker's ``sys.path``. Started from
    the folder that holds a clone named ``groundedit/``, workers would import that folder (a
    namespace package whose ``stages/`` holds YAML) instead of the installed package. Starting Ray
    from the folder the package is imported from gives workers the same package as the driver."""
    here = Path.cwd()
    os.chdir(Path(groundedit.__file__).resolve().parent.parent)
    try:
        yield
    finally:
        os.chdir(here)


class _UnitStep:
    """Ray Data actor body: one :class:`StageWorker`, one ticket per call. Subclassed per stage with
    the job as a class attribute (:func:`_step_class`), so Ray Data names the operator after the
    stage and the actor needs no constructor arguments in the object store."""

    job: StageJob

    def __init__(self):
        set_node_name(_this_node())
        self.worker = StageWorker(self.job)

    def __call__(self, batch: dict) -> dict:
        out = [self.worker.step(Ticket.model_validate_json(t)).model_dump_json() for t in batch["ticket"]]
        return {"ticket": out}


def _step_class(job: StageJob) -> type:
    return type(job.name, (_UnitStep,), {"job": job, "__module__": __name__})


def _window_policy(first_stage: str, window: int, consumed: list[int]):
    """A Ray Data backpressure policy admitting a unit into the first stage only while fewer than
    ``window`` units are between it and the consumer (``consumed[0]`` counts units taken out)."""
    from ray.data._internal.execution.backpressure_policy import BackpressurePolicy

    operator = f"MapBatches({first_stage})"

    class UnitWindow(BackpressurePolicy):
        @property
        def name(self) -> str:
            return "UnitWindow"

        def can_add_input(self, op) -> bool:
            if op.name != operator:
                return True
            return op.metrics.num_inputs_received - consumed[0] < window

    return UnitWindow


class _TicketGate:
    """Holds the reading of plan parts back until the consumer is close to them (an async actor:
    the part readers wait on it while the driver advances it). It also counts what was read, so
    the bound can be checked: ``most_ahead`` is the most tickets ever read but not yet consumed."""

    def __init__(self):
        import asyncio

        self.consumed = self.read = self.most_ahead = 0
        self._moved = asyncio.Condition()

    async def wait_for(self, consumed: int) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self.consumed >= consumed)

    async def advance(self, consumed: int) -> None:
        async with self._moved:
            self.consumed = max(self.consumed, consumed)
            self._moved.notify_all()

    async def took(self, tickets: int) -> None:
        self.read += tickets
        self.most_ahead = max(self.most_ahead, self.read - self.consumed)

    async def counts(self) -> dict[str, int]:
        return {"read": self.read, "consumed": self.consumed, "most_ahead": self.most_ahead}


def _read_parts(batch: dict, out: str, gate) -> dict:
    """Ray Data map body: the tickets of the plan parts in ``batch`` (one per call), each part read
    only once the gate lets it through."""
    import ray

    tickets = []
    for part, release_at in zip(batch["part"], batch["release_at"], strict=True):
        if release_at > 0:
            ray.get(gate.wait_for.remote(int(release_at)))
        read = PlanReader(Path(out)).part_tickets(str(part))
        ray.get(gate.took.remote(len(read)))
        tickets += [t.model_dump_json() for t in read]
    return {"ticket": tickets}


class _Writer:
    """The run's output writer (one actor, reused for every shard and rejected part)."""

    def run(self, fn: Callable, *args):
        return fn(*args)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        """``address``: a running cluster to join (``HOST:PORT`` or ``auto``; default
        ``RAY_ADDRESS``); without one a fresh local cluster is started."""
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address == "local":
            self.address = None
        self.num_cpus = num_cpus
        self._started = False
        self._joined: str | None = None
        self._writer = None
        self.ticket_counts: dict[str, int] = {}  # the last stream's (:class:`_TicketGate`)

    def _ray(self):
        import ray

        if not ray.is_initialized():
            self.start()
        return ray

    def start(self) -> str | None:
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():  # a cluster this process joined before (tests, notebooks)
                return raycluster.describe(ray.get_runtime_context().gcs_address).line()
        with _import_root_as_cwd():
            if self.address:
                self._joined = raycluster.join(self.address, kwargs)
            else:
                raycluster.start_local(self.num_cpus, kwargs)
        self._started = True
        return raycluster.describe(self._joined).line()

    def capacity(self, gpus_needed: bool) -> dict[str, float]:
        resources = self._ray().cluster_resources()
        return {"CPU": float(resources.get("CPU", 0)), "GPU": float(resources.get("GPU", 0))}

    def stream(self, jobs: list[StageJob], plan: PlanReader, window: int) -> Iterator[Ticket]:
        ray = self._ray()
        from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy
        from ray.data._internal.execution.backpressure_policy import (
            ENABLED_BACKPRESSURE_POLICIES,
            ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
        )

        parts = [p for p in plan.parts() if p.units]
        if not parts:
            return
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        ctx.raise_original_map_exception = True  # a stage that cannot start: its own error, one line
        # one unit per block: a block is cut after every row (a part read yields one block per
        # ticket). Ray Data's streaming repartition does the same but needs a CPU per task, which
        # the stage actors may all hold.
        ctx.target_max_block_size = 1
        window = max(1, window)
        consumed = [0]
        ctx.set_config(
            ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
            [*ENABLED_BACKPRESSURE_POLICIES, _window_policy(jobs[0].name, window, consumed)],
        )
        gate = ray.remote(_TicketGate).options(num_cpus=0, scheduling_strategy=_on_this_node()).remote()
        # part k is read once the consumer is within window + one part of its first unit, so the
        # next part is at hand before the first stage needs it
        lead = window + max(p.units for p in parts)
        ds = ray.data.from_items(
            [{"part": p.name, "release_at": p.first_seq - lead} for p in parts],
            override_num_blocks=len(parts),
        )
        ds = ds.map_batches(
            _read_parts,
            batch_size=1,
            fn_kwargs={"out": str(plan.out), "gate": gate},
            num_cpus=0,  # the stage actors may hold every CPU of the cluster
            compute=TaskPoolStrategy(size=1),  # parts in order, one at a time
        )
        for job in jobs:
            ds = ds.map_batches(
                _step_class(job),
                batch_size=1,
                num_cpus=job.resources.get("CPU", 1.0),
                num_gpus=job.resources.get("GPU", 0.0) or None,
                compute=ActorPoolStrategy(
                    min_size=1, max_size=max(1, job.spec.workers), max_tasks_in_flight_per_actor=2
                ),
            )
        try:
            # no prefetch: Ray Data's prefetching asks for the next block before it hands out the
            # current one, which with a window of one unit waits on itself
            for batch in ds.iter_batches(batch_size=None, prefetch_batches=0):
                for ticket in batch["ticket"]:
                    yield Ticket.model_validate_json(ticket)
                    consumed[0] += 1  # after the consumer is done with it
                    gate.advance.remote(consumed[0])
            self.ticket_counts = ray.get(gate.counts.remote())
        finally:
            ray.kill(gate)

    def on_every_node(self, fn: Callable, *args) -> dict[str, object]:
        """One task pinned to each live node (no CPU reserved); a one-node cluster is this machine,
        so ``fn`` runs here."""
        ray = self._ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) <= 1:
            return {_this_node(): fn(*args)}
        task = ray.remote(fn)
        refs = {
            raycluster.node_label(n["NodeID"], n["NodeManagerAddress"]): task.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(*args)
            for n in nodes
        }
        _, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=NODE_TASK_TIMEOUT_S)
        if late:
            name = next(k for k, r in refs.items() if r in late)
            raise ExecutorError(
                f"node {name} did not run a task within {NODE_TASK_TIMEOUT_S} s (busy, or its storage hangs?)"
            )
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))

    def call(self, fn: Callable, *args):
        ray = self._ray()
        if self._writer is None:
            # I/O-bound writers: no CPU reserved (the stage actors hold the cluster's CPUs). A writer
            # that dies is restarted and its call retried (the writers are idempotent); a call that
            # kills it four times fails the run.
            self._writer = (
                ray.remote(_Writer)
                .options(num_cpus=0, max_restarts=-1, max_task_retries=3, scheduling_strategy=_on_this_node())
                .remote()
            )
        return ray.get(self._writer.run.remote(fn, *args))

    def close(self) -> None:
        if self._writer is not None:
            import ray

            if ray.is_initialized():
                ray.kill(self._writer)
            self._writer = None
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _on_this_node():
    """Pin a driver-side actor (the ticket gate, the writer) to the driver's own node: it lives as
    long as the run, and losing a worker node must cost only that node's units, not the run."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _this_node() -> str:
    import ray

    ctx = ray.get_runtime_context()
    return raycluster.node_label(ctx.get_node_id(), ray.util.get_node_ip_address())
