"""One stage in one worker process: takes tickets, skips committed units, runs the others, commits.

Both executors drive the same :class:`StageWorker`, so resume, retries and quarantine behave the
same in-process and on Ray. For each ticket the worker:
1. finds the unit's input: the source stage's entries from the plan, or the upstream stage's
   commit (a unit whose upstream is not done is *blocked* and passes through untouched);
2. skips the unit if its own commit is current (same chain hash, same input fingerprint);
3. otherwise records an attempt (so a worker killed mid-unit still counts one), removes the old
   commit (so a crash while files are replaced never leaves a commit describing other files), runs
   the unit and writes its commit; on an exception it retries, and after ``max_attempts`` in this
   run the unit is *quarantined* with its error and the run goes on.
Bytes that changed under the run (:class:`~groundedit.formats.tar.BlobChanged`) also remove the commit
of the stage that made them, so the next run redoes that stage for the unit.
The stage's models load on the first unit that needs running, not before: a resumed run whose
stage is done never loads them. A stage that cannot start (``setup()`` raises) stops the run.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from groundedit.engine.planning import PlanReader
from groundedit.engine.runner import Unit, run_sink_unit, run_unit, setup_stage
from groundedit.engine.tickets import Outcome, Ticket
from groundedit.faults import crash_point
from groundedit.formats.commits import CommitStore, RejectedPart, UnitCommit, UnitFailure, sink_input
from groundedit.formats.listing import TarListings
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import RunFolder, producer_of
from groundedit.formats.tar import BlobChanged
from groundedit.specs import StageSpec
from groundedit.stages.base import SinkStage, SourceStage

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class StageJob:
    """Everything a worker needs to run one stage of a run. Plain data: it pickles to workers."""

    stage_cls: type
    spec: StageSpec
    config: RunConfig
    chain_hash: str
    source: str = ""  # the run's source stage (it made every input file a unit reads)
    upstream: str | None = None  # the stage whose output this one reads (None: the source stage)
    upstream_chain: str | None = None
    earlier: tuple[str, ...] = ()  # sink: every stage before it (their rejected rows go with the unit)
    max_attempts: int = MAX_ATTEMPTS
    resources: dict[str, float] = field(default_factory=dict)  # what one worker reserves (executors)

    @property
    def name(self) -> str:
        return self.spec.stage


class StageWorker:
    def __init__(self, job: StageJob):
        os.environ.update(job.config.env)  # the driver's settings, whatever this process inherited
        self.job = job
        self.commits = CommitStore(job.config.out)
        self.plan = PlanReader(job.config.out)
        self.stage = None

    def _stage(self):
        if self.stage is None:
            stage = self.job.stage_cls(self.job.spec, self.job.config)
            setup_stage(stage)
            self.stage = stage
        return self.stage

    def close(self) -> None:
        if self.stage is not None:
            self.stage.teardown()
            self.stage = None

    # --- one ticket ----------------------------------------------------------------------------

    def step(self, ticket: Ticket) -> Ticket:
        job = self.job
        unit_input = self._input(ticket)
        if unit_input is None:
            return ticket.add(Outcome(stage=job.name, state="blocked"))
        fingerprint, upstream_commits = unit_input
        current = self.commits.read(job.name, ticket.unit)
        if current is not None and current.is_current(job.chain_hash, fingerprint):
            return ticket.add(_outcome(current, "done"))
        return ticket.add(self._run(ticket, fingerprint, upstream_commits))

    def _input(self, ticket: Ticket) -> tuple[str, list[UnitCommit]] | None:
        """The unit's input fingerprint and the upstream commits it reads; None when blocked."""
        job = self.job
        if job.upstream is None:
            return ticket.fingerprint, []
        before = ticket.outcome(job.upstream)
        if before is not None and not before.ok:
            return None
        up = self.commits.read(job.upstream, ticket.unit)
        if up is None or up.chain_hash != job.upstream_chain:
            return None
        if not job.earlier:
            return up.output_fingerprint, [up]
        ups = [self.commits.read(s, ticket.unit) for s in job.earlier]
        if any(c is None for c in ups):
            return None
        return sink_input(ups), ups

    def _run(self, ticket: Ticket, fingerprint: str, upstream: list[UnitCommit]) -> Outcome:
        job, unit = self.job, ticket.unit
        self._stage()  # a stage that cannot start fails the run, not each unit in turn
        failure = self.commits.read_failure(job.name, unit)
        attempts = 0
        if failure is not None and failure.counts_for(job.config.run_id, job.chain_hash, fingerprint):
            attempts = failure.attempts
            if attempts >= job.max_attempts:
                return Outcome(stage=job.name, state="quarantined", error=failure.error)
        while True:
            attempts += 1
            record = UnitFailure(
                stage=job.name,
                unit=unit,
                run_id=job.config.run_id,
                chain_hash=job.chain_hash,
                input_fingerprint=fingerprint,
                attempts=attempts,
                error="the worker stopped during the attempt (killed, or out of memory)",
            )
            self.commits.write_failure(record)
            self.commits.remove(job.name, unit)  # before any of the unit's files is replaced
            try:
                commit = self._process(ticket, fingerprint, upstream)
            except BlobChanged as e:
                self._invalidate_producer(e, unit)
                self.commits.write_failure(record.model_copy(update={"error": str(e)}))
                return Outcome(stage=job.name, state="quarantined", error=f"{e}; rerun to redo it")
            except Exception as e:
                error = "".join(traceback.format_exception_only(type(e), e)).strip()
                self.commits.write_failure(record.model_copy(update={"error": error}))
                if attempts >= job.max_attempts:
                    return Outcome(stage=job.name, state="quarantined", error=error)
                continue
            commit = self.commits.write(commit)
            crash_point(f"{job.name}:unit-done")
            self.commits.remove_failure(job.name, unit)
            return _outcome(commit, "ran")

    def _process(self, ticket: Ticket, fingerprint: str, upstream: list[UnitCommit]) -> UnitCommit:
        job, stage = self.job, self._stage()
        out = job.config.out
        if isinstance(stage, SourceStage):
            entries, stamps = self.plan.entries(ticket)
            commit = run_unit(
                stage, Unit(ticket.unit, fingerprint, len(entries), entries=entries), job.chain_hash
            )
            return commit.model_copy(update={"source_stamps": stamps})
        last = upstream[-1]
        unit = Unit(ticket.unit, fingerprint, last.kept, input_file=out / last.file)
        if isinstance(stage, SinkStage):
            rejected = [
                RejectedPart(stage=c.stage, file=c.rejected_file, rows=sum(c.rejected.values()))
                for c in upstream
                if c.rejected_file and sum(c.rejected.values())
            ]
            return run_sink_unit(stage, unit, job.chain_hash, rejected)
        return run_unit(stage, unit, job.chain_hash)

    def _invalidate_producer(self, e: BlobChanged, unit: str) -> None:
        """Forget the commit of the stage that made the changed bytes, so the next run redoes it
        (input files: the source stage; ``data/<stage>/...``: that stage)."""
        producer = producer_of(e.ref.path)
        if producer is None and not Path(e.ref.path).is_absolute():
            return
        if producer is None and e.ref.member is not None:  # an input tar: list it again
            TarListings(RunFolder(self.job.config.out).listings).forget(e.ref.path)
        self.commits.remove(producer or self.job.source, unit)


def _outcome(commit: UnitCommit, state: str) -> Outcome:
    return Outcome(
        stage=commit.stage,
        state=state,
        rows_in=commit.rows_in,
        kept=commit.kept,
        rejected=commit.rejected,
        seconds=commit.seconds,
        setup_seconds=commit.setup_seconds,
        gpu_seconds=commit.gpu_seconds or 0.0,
        device=commit.device,
        node=commit.node,
    )


def run_with_env(env: dict[str, str], fn, *args):
    """``fn(*args)`` after applying the driver's settings (for work shipped outside a stage)."""
    os.environ.update(env)
    return fn(*args)
