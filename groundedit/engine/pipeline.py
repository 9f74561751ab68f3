"""The driver: plans the run, streams units through the stages on an executor, combines the output.

What the driver does per unit is O(1) and its memory is bounded: it writes one plan row while
planning, reads one ticket (a few hundred bytes) as the unit leaves the last stage of a wave, and
for the sink reads the unit's commit to cut shards. Workers decide whether a unit is already done
and write its commits (:mod:`groundedit.engine.worker`); planning is :mod:`groundedit.engine.planning`, the
schedule :mod:`groundedit.engine.schedule`, the final output :mod:`groundedit.engine.sharding`, status
:mod:`groundedit.engine.status`. The driver writes one summary per stage at the end of a wave.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from groundedit.engine import shared_storage
from groundedit.engine.chain import StageChain
from groundedit.engine.executors import Executor, LocalExecutor
from groundedit.engine.planning import PlanReader, PlanWriter, SourcePlanner
from groundedit.engine.runlock import run_lock
from groundedit.engine.schedule import ResourceError, check_gpus, waves, worker_resources
from groundedit.engine.sharding import OutputCombiner
from groundedit.engine.summary import RunSummary
from groundedit.engine.worker import MAX_ATTEMPTS, StageJob, run_with_env
from groundedit.faults import crash_point
from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import StageSummary
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import RunFolder, unit_files, unit_of
from groundedit.formats.scan import IMAGE_EXTENSIONS

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


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}


class Pipeline:
    def __init__(
        self,
        config: RunConfig,
        executor: Executor | None = None,
        on_event: Callable[[StageEvent], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        schedule: str = "stream",
        window: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ):
        self.config = config.model_copy(
            update={"env": {**worker_env(), **config.env}, "run_id": config.run_id or uuid.uuid4().hex}
        )
        self.executor = executor or LocalExecutor()
        self.on_event = on_event or (lambda e: None)
        self.on_notice = on_notice or (lambda msg: None)
        self.schedule = schedule
        self.window = window
        self.max_attempts = max_attempts
        self.chain = StageChain(self.config)
        self.order = self.chain.order
        self.commits = CommitStore(self.config.out)

    # --- running -------------------------------------------------------------------------------

    def run(self, only: str | None = None) -> RunSummary:
        """Run every stage, or just ``only``; return what each stage did (its saved summary) and the
        units set aside. Holds the run folder's lock throughout."""
        if only is not None and only not in self.order:
            raise PipelineError(f"unknown stage '{only}' (choose from: all, {', '.join(self.order)})")
        names = [only] if only else self.order
        self.preflight(names)
        specs = {n: self.chain.specs[n] for n in names}
        planned = self._planned_units() if self.chain.source in names else None  # before any write

        def takeover(holder: str) -> None:
            self.on_notice(f"taking over the run lock left by a run that did not finish ({holder})")

        c = self.config
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
            c.save()
            self._clean_temp(names)
            if planned is not None:
                self._write_plan(planned)
            else:
                self._check_upstream(names[0])
            summary = RunSummary()
            for wave in waves(names, specs, capacity, self.schedule):
                self._run_wave(wave, PlanReader(c.out), capacity, summary)
            return summary

    def preflight(self, names: list[str]) -> None:
        """Stop before any work if a model, file or package the stages will read cannot be had
        (listing every one, with the command that gets it)."""
        from groundedit.models.hub import missing_requirements

        reqs = [
            r for n in names for r in self.chain.classes[n](self.chain.specs[n], self.config).requirements()
        ]
        missing = missing_requirements(reqs)
        if missing:
            lines = "\n  ".join(missing)
            raise PipelineError(
                f"models or files missing for profile '{self.config.profile}':\n  {lines}\n"
                "get them (or point the stage specs at local copies), or use --profile tiny to run "
                "every stage with tiny random-weight models"
            )

    def _check_storage(self) -> None:
        """Stop before any work when a node cannot see ``--out`` or ``--input`` (DESIGN §7)."""
        c = self.config
        bad = shared_storage.unseen(
            self.executor.on_every_node, RunFolder(c.out).manifests, "storage-probe", c.input
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
        stage = self.chain.classes[name](self.chain.specs[name], self.config)
        units = SourcePlanner(stage, self.chain.hashes[name], self.commits).units()
        first = next(units, None)
        if first is None and self.config.recipe == "pairs":
            raise PipelineError(f"no edit pairs found in {self.config.input}")
        if first is None:
            raise PipelineError(
                f"no images found in {self.config.input} (looked for SA-1B sa_*.tar shards and "
                f"{', '.join(IMAGE_EXTENSIONS)} files, recursively)"
            )

        def all_units():
            yield first
            yield from units

        return all_units()

    def _write_plan(self, planned: Iterator) -> None:
        writer = PlanWriter(self.config.out)
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
        summary = StageSummary.load(self.config.out, up) if up else None
        ready = summary is not None and summary.complete and summary.chain_hash == self.chain.hashes[up]
        if not ready or not PlanReader(self.config.out).exists():
            raise PipelineError(
                f"stage '{first}' needs '{up}' finished with the current specs; "
                f"run `groundedit run --stage {up}` (or --stage all) first"
            )

    def _sweep(self, planned: set[str]) -> None:
        """Forget units that left the plan (a lower --limit, a removed input file) at every stage."""
        for name in self.order:
            gone = {u for u in self.commits.units(name) if u not in planned}
            data = RunFolder(self.config.out).data(name)
            if data.is_dir():
                for p in data.iterdir():
                    unit = unit_of(p.name)
                    if unit is not None and unit not in planned:
                        gone.add(unit)
            for unit in gone:
                self.commits.forget(name, unit)
                for rel in unit_files(name, unit).all():
                    (self.config.out / rel).unlink(missing_ok=True)

    def _clean_temp(self, names: list[str]) -> None:
        """Temp files of writers that were killed (no worker runs while the driver holds the lock)."""
        run = RunFolder(self.config.out)
        folders = [run.shards, run.rejected, run.manifests]
        folders += [f for n in names for f in (run.data(n), run.commit_dir(n))]
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
                    config=self.config,
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

    def _run_wave(
        self, wave: list[str], plan: PlanReader, capacity: dict[str, float], summary: RunSummary
    ) -> None:
        c, sink = self.config, self.chain.sink
        planned = plan.info().units
        events = {n: StageEvent(n, "start", units_total=planned) for n in wave}
        for name in wave:
            spec_hash, chain_hash = self.chain.specs[name].spec_hash(), self.chain.hashes[name]
            summary.start(
                StageSummary(stage=name, spec_hash=spec_hash, chain_hash=chain_hash, units_planned=planned)
            )
            self.on_event(events[name])
        combiner = None
        if sink in wave:
            params = self.chain.classes[sink].Params.model_validate(self.chain.specs[sink].params)

            def call(fn, *args):
                return self.executor.call(run_with_env, c.env, fn, *args)

            combiner = OutputCombiner(c.out, sink, params, self.commits, call)
        window = self.window or max(8, 2 * sum(self.chain.specs[n].workers for n in wave))
        for ticket in self.executor.stream(self._jobs(wave, capacity), plan, window):
            for name in wave:
                summary.count(ticket.unit, ticket.outcome(name))
                s, ev = summary.stages[name], events[name]
                ev.kind, ev.units_done = "advance", ev.units_done + 1
                ev.kept, ev.rejected = s.kept, sum(s.rejected.values())
                self.on_event(ev)
            if combiner is not None:
                combiner.add(ticket)
            crash_point("run:ticket-done")
        output = combiner.finish() if combiner is not None else None
        for name in wave:
            record = summary.seal(name)
            if name == sink:
                record.shards, record.exported = output.shards, output.samples
                record.rejected_rows = output.rejected_rows
                record.kept = output.samples
            record.save(c.out)
            if record.units_ran:
                self._invalidate_after(name, wave)
            events[name].kind = "done"
            self.on_event(events[name])

    def _invalidate_after(self, name: str, wave: list[str]) -> None:
        """A stage that processed units may have changed its output: later stages this wave did
        not check are no longer known to be complete."""
        for later in self.chain.later(name):
            if later in wave:
                continue
            s = StageSummary.load(self.config.out, later)
            if s is not None and s.complete:
                s.complete = False
                s.save(self.config.out)
