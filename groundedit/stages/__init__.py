"""The stage registry: stage name → class. Stage modules are light to import (no models, no Ray)."""

from __future__ import annotations

from groundedit.stages.base import BaseStage, SinkStage, SourceStage, Stage, UnitIO
from groundedit.stages.difference import DifferenceStage
from groundedit.stages.edit import EditStage
from groundedit.stages.export import ExportStage
from groundedit.stages.ground import GroundStage
from groundedit.stages.ingest import IngestStage
from groundedit.stages.instruct import InstructStage
from groundedit.stages.localize import LocalizeStage
from groundedit.stages.pair_ingest import PairIngestStage
from groundedit.stages.qc import QcStage
from groundedit.stages.reason import ReasonStage
from groundedit.stages.render import RenderStage
from groundedit.stages.rewrite import RewriteStage
from groundedit.stages.saliency import SaliencyStage
from groundedit.stages.segment import SegmentStage
from groundedit.stages.select import SelectStage
from groundedit.stages.tag import TagStage

STAGES: dict[str, type[BaseStage]] = {
    cls.name: cls
    for cls in (
        IngestStage,
        TagStage,
        GroundStage,
        SelectStage,
        SaliencyStage,
        RenderStage,
        InstructStage,
        RewriteStage,
        EditStage,
        QcStage,
        ExportStage,
        PairIngestStage,
        DifferenceStage,
        LocalizeStage,
        SegmentStage,
        ReasonStage,
    )
}

__all__ = ["STAGES", "BaseStage", "SinkStage", "SourceStage", "Stage", "UnitIO"]
