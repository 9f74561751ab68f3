"""The stage registry: stage name → class. Stage modules are light to import (no models, no Ray)."""

from __future__ import annotations

from groundedit.stages.base import BaseStage, RunContext, SinkStage, SourceStage, Stage, UnitIO
from groundedit.stages.export import ExportStage
from groundedit.stages.ingest import IngestStage
from groundedit.stages.render import RenderStage
from groundedit.stages.select import SelectStage

STAGES: dict[str, type[BaseStage]] = {
    cls.name: cls for cls in (IngestStage, SelectStage, RenderStage, ExportStage)
}

__all__ = ["STAGES", "BaseStage", "RunContext", "SinkStage", "SourceStage", "Stage", "UnitIO"]
