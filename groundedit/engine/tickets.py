"""What moves between stages: a small ticket per unit, never the data.

A :class:`Ticket` names a unit (its place in the plan and, for the source stage, where its entries
are stored); each stage a ticket passes appends an :class:`Outcome`. The data itself stays in the
run folder, named by the unit's commits, so tickets are a few hundred bytes whatever the unit
holds, and the driver sees outcomes only to show progress and to combine the final output.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutcomeState = Literal["ran", "done", "blocked", "quarantined"]


class Outcome(BaseModel):
    """What one stage did with one unit."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    state: OutcomeState = Field(
        description="ran: processed now; done: already committed; blocked: upstream not done; "
        "quarantined: failed every attempt this run"
    )
    rows_in: int = 0
    kept: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    setup_seconds: float = 0.0
    gpu_seconds: float = 0.0
    device: str = "cpu"
    node: str = Field("", description="the node whose commit this is (done and ran units)")

    @property
    def ok(self) -> bool:
        return self.state in ("ran", "done")


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(description="position in the plan: the order of the final output")
    unit: str
    rows: int = Field(description="entries the source stage planned for the unit")
    fingerprint: str = Field(description="content fingerprint of the unit's input files")
    plan_part: str = Field("", description="plan file holding the unit's entries (source stage)")
    plan_row: int = 0
    outcomes: list[Outcome] = Field(default_factory=list)

    def outcome(self, stage: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.stage == stage), None)

    def add(self, outcome: Outcome) -> Ticket:
        return self.model_copy(update={"outcomes": [*self.outcomes, outcome]})
