"""The driver: plans the run, streams units through the stages on an executor, combines the output.

What the driver does per unit is O(1) and its memory is bounded: it writes one plan row while
planning, reads one ticket (a few hundred bytes) as the unit leaves the last stage of a wave, and
for the sink reads the unit's commit to cut shards. Workers decide whether a unit is already done
and write its commits (:mod:`groundedit.engine.worker`); planning is :mod:`groundedit.engine.planning`, the
schedule :mod:`groundedit.engine.schedule`, the final output :mod:`groundedit.engine.sharding`, status
:mod:`groundedit.engine.status`. The driver writes one summary per stage at the end of a wave.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from groundedit.engine import shared_storage
from groundedit.engine.chain import StageChain
from groundedit.engine.executors import Executor, LocalExecutor
from groundedit.engine.planning import PlanReader, PlanWriter, SourcePlanner
from groundedit.engine.runlock import run_lock
from groundedit.engine.runner import unit_paths
from groundedit.engine.schedule import ResourceError, check_gpus, waves, worker_resources
from groundedit.engine.sharding import OutputCombiner
from groundedit.engine.tickets import Outcome
from groundedit.engine.worker import MAX_ATTEMPTS, StageJob, run_with_env
from groundedit.faults import crash_point
from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import RunInfo, StageSummary
from groundedit.formats.scan import IMAGE_EXTENSIONS
from groundedit.formats.shards import REJECTED_DIR
from groundedit.stages import RunContext

# settings a worker must see as the driver does (tiny-model cache, spec/prompt folders, HF cache)
WORKER_ENV_PREFIXES = ("GROUNDEDIT_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")


class PipelineError(RuntimeError):
    """The run cannot proceed (e.g. a stage's input is not ready); the message says what to do."""


@dataclass
class StageEvent:
    """Progress of one stage, for a progress display (units, and samples kept / rejected)."""

    stage: str
    kind: str  # "start" | "advance" | "done"
    units_total: int = 0
    units_done: int = 0
    kept: int = 0
    rejected: int = 0


@dataclass
class _Tally:
    """What the units leaving a wave say about one stage."""

    done: int = 0
    ran: int = 0
    blocked: int = 0
    rows_in: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    quarantined: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    setup_seconds: float = 0.0
    gpu_seconds: float = 0.0
    devices: set[str] = field(default_factory=set)
    nodes: Counter = field(default_factory=Counter)

    def add(self, unit: str, o: Outcome) -> None:
        if o.ok:
            self.done += 1
            self.nodes[o.node] += 1
            self.ran += o.state == "ran"
            self.rows_in += o.rows_in
            self.kept += o.kept
            self.rejected.update(o.rejected)
            self.seconds += o.seconds
            self.setup_seconds += o.setup_seconds
            self.gpu_seconds += o.gpu_seconds
            self.devices.add(o.device)
        elif o.state == "quarantined":
            self.quarantined[unit] = o.error or "failed"
        else:
            self.blocked += 1


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}


class Pipeline:
    def __init__(
        self,
        ctx: RunContext,
        executor: Executor | None = None,
        on_event: Callable[[StageEvent], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        schedule: str = "stream",
        window: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ):
        self.ctx = dataclasses.replace(
            ctx, env={**worker_env(), **ctx.env}, run_id=ctx.run_id or uuid.uuid4().hex
        )
        self.executor = executor or LocalExecutor()
        self.on_event = on_event or (lambda e: None)
        self.on_notice = on_notice or (lambda msg: None)
        self.schedule = schedule
        self.window = window
        self.max_attempts = max_attempts
        self.chain = StageChain(self.ctx)
        self.order = self.chain.order
        self.commits = CommitStore(self.ctx.out)

    # --- running -------------------------------------------------------------------------------

    def run(self, only: str | None = None) -> dict[str, dict]:
        """Run every stage, or just ``only``; return per-stage summaries (quarantined units in each
        stage's ``quarantined``). Holds the run folder's lock throughout."""
        if only is not None and only not in self.order:
            raise PipelineError(f"unknown stage '{only}' (choose from: all, {', '.join(self.order)})")
        names = [only] if only else self.order
        self.preflight(names)
        specs = {n: self.chain.specs[n] for n in names}
        planned = self._planned_units() if self.chain.source in names else None  # before any write

        def takeover(holder: str) -> None:
            self.on_notice(f"taking over the run lock left by a run that did not finish ({holder})")

        c = self.ctx
        with run_lock(c.out, on_takeover=takeover):  # before Ray starts: a busy folder costs nothing
            where = self.executor.start()
            if where:
                self.on_notice(where)
            capacity = self.executor.capacity(any(s.resources.gpus > 0 for s in specs.values()))
            try:
                check_gpus(
                    specs, capacity, "this machine" if self.executor.name == "local" else "the Ray cluster"
                )
            except ResourceError as e:
                raise PipelineError(str(e)) from None
            self._check_storage()
            RunInfo(input=str(c.input), profile=c.profile, seed=c.seed, limit=c.limit).save(c.out)
            self._clean_temp(names)
            if planned is not None:
                self._write_plan(planned)
            else:
                self._check_upstream(names[0])
            summary: dict[str, dict] = {}
            for wave in waves(names, specs, capacity, self.schedule):
                summary.update(self._run_wave(wave, PlanReader(c.out), capacity))
            return summary

    def preflight(self, names: list[str]) -> None:
        """Stop before any work if a model, file or package the stages will read cannot be had
        (listing every one, with the command that gets it)."""
        from groundedit.models.hub import missing_requirements

        reqs = [r for n in names for r in self.chain.classes[n](self.chain.specs[n], self.ctx).requirements()]
        missing = missing_requirements(reqs)
        if missing:
            lines = "\n  ".join(missing)
            raise PipelineError(
                f"models or files missing for profile '{self.ctx.profile}':\n  {lines}\n"
                "get them (or point the stage specs at local copies), or use --profile tiny to run "
                "every stage with tiny random-weight models"
            )

    def _check_storage(self) -> None:
        """Stop before any work when a node cannot see ``--out`` or ``--input`` (DESIGN §7)."""
        c = self.ctx
        bad = shared_storage.unseen(
            self.executor.on_every_node, c.out / "manifests", "storage-probe", c.input
        )
        if bad:
            node, why = next(iter(bad.items()))
            more = f" (and {len(bad) - 1} more node{'s' * (len(bad) > 2)})" if len(bad) > 1 else ""
            raise PipelineError(
                f"node {node} {why}{more}; --input and --out must be on storage every node mounts "
                "at the same path (a shared filesystem)"
            )

    # --- planning ------------------------------------------------------------------------------

    def _planned_units(self) -> Iterator:
        """The source stage's units, lazily; fails now (before anything is written) on an input
        without images."""
        name = self.chain.source
        stage = self.chain.classes[name](self.chain.specs[name], self.ctx)
        units = SourcePlanner(stage, self.chain.hashes[name], self.commits).units()
        first = next(units, None)
        if first is None:
            raise PipelineError(
                f"no images found in {self.ctx.input} (looked for SA-1B sa_*.tar shards and "
                f"{', '.join(IMAGE_EXTENSIONS)} files, recursively)"
            )

        def all_units():
            yield first
            yield from units

        return all_units()

    def _write_plan(self, planned: Iterator) -> None:
        writer = PlanWriter(self.ctx.out)
        units: set[str] = set()  # ids only (tens of bytes a unit), to forget units that left the plan
        try:
            for p in planned:
                writer.add(p.unit, p.rows, p.fingerprint, p.entries, p.stamps)
                units.add(p.unit)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._sweep(units)

    def _check_upstream(self, first: str) -> None:
        up = self.chain.previous(first)
        summary = StageSummary.load(self.ctx.out, up) if up else None
        ready = summary is not None and summary.complete and summary.chain_hash == self.chain.hashes[up]
        if not ready or not PlanReader(self.ctx.out).exists():
            raise PipelineError(
                f"stage '{first}' needs '{up}' finished with the current specs; "
                f"run `groundedit run --stage {up}` (or --stage all) first"
            )

    def _sweep(self, planned: set[str]) -> None:
        """Forget units that left the plan (a lower --limit, a removed input file) at every stage."""
        for name in self.order:
            gone = {u for u in self.commits.units(name) if u not in planned}
            data = self.ctx.out / "data" / name
            if data.is_dir():
                for p in data.iterdir():
                    unit = _unit_of(p.name)
                    if unit is not None and unit not in planned:
                        gone.add(unit)
            for unit in gone:
                self.commits.forget(name, unit)
                for rel in unit_paths(name, unit).values():
                    (self.ctx.out / rel).unlink(missing_ok=True)

    def _clean_temp(self, names: list[str]) -> None:
        """Temp files of writers that were killed (no worker runs while the driver holds the lock)."""
        out = self.ctx.out
        folders = [out / "shards", out / REJECTED_DIR, out / "manifests"]
        folders += [out / d / n for n in names for d in ("data", "commits")]
        for folder in folders:
            if folder.is_dir():
                for p in folder.glob(".*.tmp-*"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                for p in folder.glob(".plan.*"):
                    shutil.rmtree(p, ignore_errors=True)

    # --- one wave ------------------------------------------------------------------------------

    def _jobs(self, wave: list[str], capacity: dict[str, float]) -> list[StageJob]:
        resources = worker_resources(wave, self.chain.specs, capacity)
        jobs = []
        for name in wave:
            up = self.chain.previous(name)
            jobs.append(
                StageJob(
                    stage_cls=self.chain.classes[name],
                    spec=self.chain.specs[name],
                    ctx=self.ctx,
                    chain_hash=self.chain.hashes[name],
                    source=self.chain.source,
                    upstream=up,
                    upstream_chain=self.chain.hashes[up] if up else None,
                    earlier=tuple(self.order[:-1]) if name == self.chain.sink else (),
                    max_attempts=self.max_attempts,
                    resources=resources[name],
                )
            )
        return jobs

    def _run_wave(self, wave: list[str], plan: PlanReader, capacity: dict[str, float]) -> dict[str, dict]:
        c, sink = self.ctx, self.chain.sink
        planned = plan.info().units
        tallies = {n: _Tally() for n in wave}
        events = {n: StageEvent(n, "start", units_total=planned) for n in wave}
        for ev in events.values():
            self.on_event(ev)
        combiner = None
        if sink in wave:
            params = self.chain.classes[sink].Params.model_validate(self.chain.specs[sink].params)

            def call(fn, *args):
                return self.executor.call(run_with_env, c.env, fn, *args)

            combiner = OutputCombiner(c.out, sink, params, self.commits, call)
        window = self.window or max(8, 2 * sum(self.chain.specs[n].workers for n in wave))
        for ticket in self.executor.stream(self._jobs(wave, capacity), plan, window):
            for name in wave:
                o = ticket.outcome(name)
                tallies[name].add(ticket.unit, o)
                ev = events[name]
                ev.kind, ev.units_done = "advance", ev.units_done + 1
                ev.kept, ev.rejected = tallies[name].kept, sum(tallies[name].rejected.values())
                self.on_event(ev)
            if combiner is not None:
                combiner.add(ticket)
            crash_point("run:ticket-done")
        outputs = combiner.finish() if combiner is not None else {}
        summary = {}
        for name in wave:
            t = tallies[name]
            record = StageSummary(
                stage=name,
                spec_hash=self.chain.specs[name].spec_hash(),
                chain_hash=self.chain.hashes[name],
                units_planned=planned,
                units_done=t.done,
                units_ran=t.ran,
                units_blocked=t.blocked,
                units_quarantined=len(t.quarantined),
                rows_in=t.rows_in,
                kept=t.kept,
                rejected=dict(t.rejected),
                complete=t.done == planned,
                seconds=round(t.seconds, 3),
                setup_seconds=round(t.setup_seconds, 3),
                gpu_seconds=round(t.gpu_seconds, 3),
                devices=sorted(t.devices),
                nodes=dict(sorted(t.nodes.items())),
            )
            if name == sink:
                record.shards, record.exported = outputs["shards"], outputs["samples"]
                record.rejected_rows = outputs["rejected_rows"]
                record.kept = outputs["samples"]
            record.save(c.out)
            if t.ran:
                self._invalidate_after(name, wave)
            events[name].kind = "done"
            self.on_event(events[name])
            summary[name] = {
                "units": planned,
                "ran": t.ran,
                "rows": t.rows_in,
                "kept": t.kept,
                "rejected": dict(t.rejected),
                "blocked": t.blocked,
                "quarantined": dict(t.quarantined),
            }
            if name == sink:
                summary[name] |= {"kept": outputs["samples"], "rejected": {}, **outputs}
        return summary

    def _invalidate_after(self, name: str, wave: list[str]) -> None:
        """A stage that processed units may have changed its output: later stages this wave did
        not check are no longer known to be complete."""
        for later in self.chain.later(name):
            if later in wave:
                continue
            s = StageSummary.load(self.ctx.out, later)
            if s is not None and s.complete:
                s.complete = False
                s.save(self.ctx.out)


def _unit_of(filename: str) -> str | None:
    for suffix in (".rejected.parquet", ".parquet", ".tar"):
        if filename.endswith(suffix) and not filename.startswith("."):
            return filename[: -len(suffix)]
    return None
