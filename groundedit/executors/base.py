"""The executor protocol: run a stage over units somewhere, yield each unit's record as it finishes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from groundedit.manifest import UnitRecord
from groundedit.runner import Unit
from groundedit.specs import StageSpec
from groundedit.stages.base import RunContext, SourceStage, Stage


class Executor(Protocol):
    name: str

    def map_units(
        self,
        stage_cls: type[Stage | SourceStage],
        spec: StageSpec,
        ctx: RunContext,
        units: list[Unit],
        chain_hash: str,
    ) -> Iterator[UnitRecord]:
        """Set the stage up on each worker, run every unit, yield records in completion order."""
        ...

    def close(self) -> None:
        """Release the executor's resources (a Ray cluster it started)."""
        ...
