"""In-process executor: one stage instance, units in order. For tests, debugging and small runs."""

from __future__ import annotations

from collections.abc import Iterator

from groundedit.manifest import UnitRecord
from groundedit.runner import Unit, run_unit, setup_stage
from groundedit.specs import StageSpec
from groundedit.stages.base import RunContext, SourceStage, Stage


class LocalExecutor:
    name = "local"

    def map_units(
        self,
        stage_cls: type[Stage | SourceStage],
        spec: StageSpec,
        ctx: RunContext,
        units: list[Unit],
        chain_hash: str,
    ) -> Iterator[UnitRecord]:
        if not units:
            return
        stage = stage_cls(spec, ctx)
        setup_stage(stage)
        try:
            for unit in units:
                yield run_unit(stage, unit, chain_hash)
        finally:
            stage.teardown()

    def close(self) -> None:
        pass
