"""What a run did: :class:`RunSummary`, returned by :meth:`Pipeline.run` and printed by the CLI.

It holds each stage's :class:`~groundedit.formats.manifest.StageSummary` exactly as the driver saves it
(``manifests/<stage>.json``, which the report reads back through ``rundata``), counted from the
outcomes on the tickets leaving a wave, and the units that failed every attempt with their errors.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from groundedit.engine.tickets import Outcome
from groundedit.formats.manifest import StageSummary


class QuarantinedUnit(BaseModel):
    """A unit set aside after failing every attempt this run (the next run tries it again)."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    unit: str
    error: str


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: dict[str, StageSummary] = Field(
        default_factory=dict, description="stage -> summary, in run order"
    )
    quarantined: list[QuarantinedUnit] = Field(default_factory=list)

    def start(self, record: StageSummary) -> None:
        """Begin counting a stage (its identity and planned units set, every count zero)."""
        self.stages[record.stage] = record

    def count(self, unit: str, outcome: Outcome) -> None:
        """Add what one stage did with one unit to that stage's summary."""
        s = self.stages[outcome.stage]
        if outcome.state == "quarantined":
            s.units_quarantined += 1
            self.quarantined.append(
                QuarantinedUnit(stage=s.stage, unit=unit, error=outcome.error or "failed")
            )
            return
        if not outcome.ok:
            s.units_blocked += 1
            return
        s.units_done += 1
        s.units_ran += outcome.state == "ran"
        s.rows_in += outcome.rows_in
        s.kept += outcome.kept
        s.rejected = dict(Counter(s.rejected) + Counter(outcome.rejected))
        s.seconds += outcome.seconds
        s.setup_seconds += outcome.setup_seconds
        s.gpu_seconds += outcome.gpu_seconds
        s.devices = sorted({*s.devices, outcome.device})
        s.nodes[outcome.node] = s.nodes.get(outcome.node, 0) + 1

    def seal(self, stage: str) -> StageSummary:
        """The stage's summary as it is saved: complete or not, sums rounded, reasons most frequent first."""
        s = self.stages[stage]
        s.complete = s.units_done == s.units_planned
        s.seconds, s.setup_seconds = round(s.seconds, 3), round(s.setup_seconds, 3)
        s.gpu_seconds = round(s.gpu_seconds, 3)
        s.rejected = dict(sorted(s.rejected.items(), key=lambda kv: (-kv[1], kv[0])))
        s.nodes = dict(sorted(s.nodes.items()))
        return s

    @property
    def sink(self) -> StageSummary | None:
        """The summary of the stage that wrote the shards, when this run ran it."""
        return next((s for s in self.stages.values() if s.shards is not None), None)

    def dropped(self) -> Counter:
        """Samples dropped this run, by ``stage/reason``."""
        return Counter({f"{s.stage}/{r}": n for s in self.stages.values() for r, n in s.rejected.items()})
