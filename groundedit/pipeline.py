"""The driver: plans each stage's units, skips finished ones, runs the rest on an executor, and keeps
the manifests. Only this module (in the driver process) writes manifests.

Staleness: each stage has a *chain hash* — its spec hash (spec + prompt, plus the seed for seeded
stages) combined with its upstream stage's chain hash. A unit is done when its manifest record has
the current chain hash and was made from the input its upstream unit now provides. So a changed
spec or prompt redoes that stage and every later one; new input files add units; nothing else runs.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from groundedit.executors import Executor, LocalExecutor
from groundedit.faults import crash_point
from groundedit.manifest import RunInfo, StageManifest, UnitRecord, digest
from groundedit.runlock import run_lock
from groundedit.runner import Unit, unit_paths
from groundedit.scan import IMAGE_EXTENSIONS
from groundedit.specs import SpecError, StageSpec, load_pipeline, load_spec
from groundedit.stages import STAGES, RunContext, SinkStage, SourceStage, Stage


class PipelineError(RuntimeError):
    """The run cannot proceed (e.g. a stage's input is not ready); the message says what to do."""


@dataclass
class StageEvent:
    """Progress of one stage, for a progress display."""

    stage: str
    kind: str  # "start" | "advance" | "done"
    rows_total: int = 0
    rows_done: int = 0
    kept: int = 0
    rejected: int = 0
    skipped: bool = False


@dataclass
class StageStatus:
    stage: str
    state: str  # "done" | "partial" | "stale" | "not started"
    units_done: int = 0
    units_planned: int = 0
    rows_in: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    detail: str = ""


class _SinkProgress:
    """Resumable state and progress reporting handed to a sink stage."""

    def __init__(self, manifest: StageManifest, out: Path, emit: Callable[[int], None]):
        self.manifest = manifest
        self.out = out
        self.state = manifest.extra
        self._emit = emit

    def checkpoint(self) -> None:
        self.manifest.save(self.out)

    def advance(self, n: int) -> None:
        self._emit(n)


class Pipeline:
    def __init__(
        self,
        ctx: RunContext,
        executor: Executor | None = None,
        on_event: Callable[[StageEvent], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ):
        self.ctx = ctx
        self.executor = executor or LocalExecutor()
        self.on_event = on_event or (lambda e: None)
        self.on_notice = on_notice or (lambda msg: None)
        self.order = load_pipeline()
        self.specs: dict[str, StageSpec] = {}
        self.classes = {}
        for name in self.order:
            if name not in STAGES:
                raise SpecError(f"stages/pipeline.yaml names unknown stage '{name}'")
            self.specs[name] = spec = load_spec(name, ctx.profile)
            try:
                STAGES[name].Params.model_validate(spec.params)
            except ValueError as e:
                raise SpecError(f"stages/{name}.yaml (profile {ctx.profile}): {e}") from e
            self.classes[name] = STAGES[name]
        self._check_shape()
        self.chain = self._chain_hashes()

    def _check_shape(self) -> None:
        kinds = [self.classes[n] for n in self.order]
        if not issubclass(kinds[0], SourceStage) or not issubclass(kinds[-1], SinkStage):
            raise SpecError(
                "the pipeline must start with a source stage (ingest) and end with a sink (export)"
            )
        if not all(issubclass(k, Stage) for k in kinds[1:-1]):
            raise SpecError("stages between the source and the sink must be sample-to-sample stages")

    def _chain_hashes(self) -> dict[str, str]:
        chain, prev = {}, ""
        for name in self.order:
            seed = self.ctx.seed if self.classes[name].uses_seed else None
            prev = chain[name] = digest(prev, self.specs[name].spec_hash(), seed)
        return chain

    # --- planning ------------------------------------------------------------------------------

    def _source_units(self, name: str) -> list[Unit]:
        stage = self.classes[name](self.specs[name], self.ctx)
        units = []
        for unit_id, entries in stage.plan():
            files = sorted(
                {e.image.path for e in entries} | {e.annotation.path for e in entries if e.annotation}
            )
            stats = [(f, *_stat(f)) for f in files]
            fp = digest([e.model_dump() for e in entries], stats)
            units.append(Unit(id=unit_id, fingerprint=fp, rows=len(entries), entries=entries))
        return units

    def _downstream_units(self, upstream: StageManifest) -> list[Unit]:
        return [
            Unit(id=r.unit, fingerprint=r.output_fingerprint, rows=r.kept, input_file=self.ctx.out / r.file)
            for r in sorted(upstream.units.values(), key=lambda r: r.unit)
        ]

    def _manifest(self, name: str) -> StageManifest:
        m = StageManifest.load(self.ctx.out, name)
        if m is None or m.chain_hash != self.chain[name]:
            old = m.units if m else {}
            m = StageManifest(stage=name, spec_hash=self.specs[name].spec_hash(), chain_hash=self.chain[name])
            m.units = old  # kept only to delete their files if they leave the plan
        return m

    def _ready_upstream(self, i: int) -> StageManifest:
        up = self.order[i - 1]
        m = StageManifest.load(self.ctx.out, up)
        if m is None or not m.complete or m.chain_hash != self.chain[up]:
            raise PipelineError(
                f"stage '{self.order[i]}' needs '{up}' finished with the current specs; "
                f"run `groundedit run --stage {up}` (or --stage all) first"
            )
        return m

    # --- running -------------------------------------------------------------------------------

    def run(self, only: str | None = None) -> dict[str, dict]:
        """Run every stage in order, or just ``only``; return per-stage summaries.

        Holds the run folder's lock throughout (a second driver on the folder is refused)."""
        if only is not None and only not in self.order:
            raise PipelineError(f"unknown stage '{only}' (choose from: all, {', '.join(self.order)})")
        names = [only] if only else self.order
        self.preflight(names)  # before anything is written
        c = self.ctx
        source = self.order[0]
        source_units = self._source_units(source) if source in names else None
        if source_units == []:
            raise PipelineError(
                f"no images found in {c.input} (looked for SA-1B sa_*.tar shards and "
                f"{', '.join(IMAGE_EXTENSIONS)} files, recursively)"
            )

        def takeover(holder: str) -> None:
            self.on_notice(f"taking over the run lock left by a run that did not finish ({holder})")

        with run_lock(c.out, on_takeover=takeover):
            RunInfo(input=str(c.input), profile=c.profile, seed=c.seed, limit=c.limit).save(c.out)
            summary = {}
            for name in names:
                i = self.order.index(name)
                if i == len(self.order) - 1:
                    summary[name] = self._run_sink(i)
                else:
                    summary[name] = self._run_map(i, source_units if i == 0 else None)
            return summary

    def preflight(self, names: list[str]) -> None:
        """Stop before any work if a model the stages need cannot be had (listing every one)."""
        from groundedit.models.hub import missing_models

        refs = [(n, role, ref) for n in names for role, ref in self.specs[n].models.items()]
        missing = missing_models(refs)
        if missing:
            lines = "\n  ".join(missing)
            raise PipelineError(
                f"models missing for profile '{self.ctx.profile}':\n  {lines}\n"
                "get them (or point the stage specs at local copies), or use --profile tiny to run "
                "every stage with tiny random-weight models"
            )

    def _run_map(self, i: int, units: list[Unit] | None = None) -> dict:
        name = self.order[i]
        if units is None:
            units = self._source_units(name) if i == 0 else self._downstream_units(self._ready_upstream(i))
        m = self._manifest(name)
        planned = {u.id for u in units}
        for uid in [u for u in m.units if u not in planned]:
            _remove_unit_files(self.ctx.out, name, uid)
            del m.units[uid]
        pending = [u for u in units if not _is_done(m.units.get(u.id), u, self.chain[name])]
        for u in pending:
            m.units.pop(u.id, None)
        m.units_planned = len(units)
        m.complete = False
        m.save(self.ctx.out)
        _clean_tmp(self.ctx.out / "data" / name)
        total = sum(u.rows for u in units)
        ev = StageEvent(name, "start", rows_total=total, skipped=not pending)
        _, ev.kept, rej = m.totals()
        ev.rejected = sum(rej.values())
        ev.rows_done = total - sum(u.rows for u in pending)
        self.on_event(ev)
        for rec in self.executor.map_units(
            self.classes[name], self.specs[name], self.ctx, pending, self.chain[name]
        ):
            crash_point(f"{name}:unit-done")
            m.units[rec.unit] = rec
            m.save(self.ctx.out)
            ev.kind, ev.rows_done = "advance", ev.rows_done + rec.rows_in
            ev.kept += rec.kept
            ev.rejected += sum(rec.rejected.values())
            self.on_event(ev)
        m.complete = True
        m.save(self.ctx.out)
        ev.kind = "done"
        self.on_event(ev)
        rows, kept, rejected = m.totals()
        return {
            "units": len(units),
            "ran": len(pending),
            "rows": rows,
            "kept": kept,
            "rejected": dict(rejected),
        }

    def _run_sink(self, i: int) -> dict:
        name = self.order[i]
        upstream = self._ready_upstream(i)
        inputs = [
            (r.unit, self.ctx.out / r.file) for r in sorted(upstream.units.values(), key=lambda r: r.unit)
        ]
        fp = digest(self.chain[name], [(r.unit, r.output_fingerprint) for r in upstream.units.values()])
        m = StageManifest.load(self.ctx.out, name)
        if m is None or m.chain_hash != self.chain[name] or m.extra.get("fingerprint") != fp:
            m = StageManifest(stage=name, spec_hash=self.specs[name].spec_hash(), chain_hash=self.chain[name])
            m.extra = {"fingerprint": fp, "shards": []}
        total = sum(r.kept for r in upstream.units.values())
        ev = StageEvent(name, "start", rows_total=total, skipped=m.complete)
        ev.rows_done = ev.kept = total if m.complete else sum(s["samples"] for s in m.extra["shards"])
        self.on_event(ev)
        if not m.complete:
            m.save(self.ctx.out)

            def advance(n: int) -> None:
                ev.kind = "advance"
                ev.rows_done += n
                ev.kept += n
                self.on_event(ev)

            stage = self.classes[name](self.specs[name], self.ctx)
            start = time.perf_counter()
            stage.run(inputs, self._rejected_files(i), _SinkProgress(m, self.ctx.out, advance))
            m.extra["seconds"] = round(m.extra.get("seconds", 0.0) + time.perf_counter() - start, 3)
            m.units_planned = len(m.extra["shards"])
            m.complete = True
            m.save(self.ctx.out)
        ev.kind = "done"
        self.on_event(ev)
        shards = m.extra["shards"]
        return {"shards": len(shards), "samples": sum(s["samples"] for s in shards)}

    def _rejected_files(self, i: int) -> list[Path]:
        files = []
        for name in self.order[:i]:
            m = StageManifest.load(self.ctx.out, name)
            for r in sorted(m.units.values(), key=lambda r: r.unit):
                if r.rejected_file and sum(r.rejected.values()):
                    files.append(self.ctx.out / r.rejected_file)
        return files

    # --- status --------------------------------------------------------------------------------

    def status(self) -> list[StageStatus]:
        """Per-stage progress from the manifests, judged against the current specs."""
        out = []
        upstream: StageManifest | None = None
        for i, name in enumerate(self.order):
            m = StageManifest.load(self.ctx.out, name)
            if m is None:
                out.append(StageStatus(name, "not started"))
                upstream = None
                continue
            rows, kept, rejected = m.totals()
            st = StageStatus(
                name, "done" if m.complete else "partial", len(m.units), m.units_planned, rows, kept, rejected
            )
            if i == len(self.order) - 1:
                st.units_done = len(m.extra.get("shards", []))
                st.kept = st.rows_in = sum(s["samples"] for s in m.extra.get("shards", []))
                st.detail = f"{st.units_done} shard{'' if st.units_done == 1 else 's'}"
            if m.chain_hash != self.chain[name]:
                st.state, st.detail = "stale", "spec, prompt or seed changed"
            elif upstream is not None and i < len(self.order) - 1:
                current = {r.unit: r.output_fingerprint for r in upstream.units.values()}
                if any(current.get(u.unit) != u.input_fingerprint for u in m.units.values()):
                    st.state, st.detail = "stale", "upstream output changed"
            out.append(st)
            upstream = m
        return out


def _is_done(rec: UnitRecord | None, unit: Unit, chain: str) -> bool:
    return rec is not None and rec.chain_hash == chain and rec.input_fingerprint == unit.fingerprint


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _remove_unit_files(out: Path, stage: str, unit: str) -> None:
    for rel in unit_paths(stage, unit).values():
        (out / rel).unlink(missing_ok=True)


def _clean_tmp(directory: Path) -> None:
    if directory.is_dir():
        for p in directory.glob(".*.tmp-*"):
            p.unlink(missing_ok=True)
