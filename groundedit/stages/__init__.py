"""The stage registry: stage name → class. Stage modules are light to import (no models, no Ray)."""

from __future__ import annotations

from groundedit.stages.base import BaseStage, RunContext, SinkStage, SourceStage, Stage, UnitIO
from groundedit.stages.difference import DifferenceStage
from groundedit.stages.edit import EditStage
from groundedit.stages.export import ExportStage
from groundedit.stages.ground import GroundStage
from groundedit.stages.ingest import IngestStage
from groundedit.stages.instruct import InstructionWriter
from groundedit.stages.localize import RegionProposer
from groundedit.stages.pair_ingest import PairIngestStage
from groundedit.stages.qc import QualityJudge
from groundedit.stages.reason import PairReasoner
from groundedit.stages.render import RenderStage
from groundedit.stages.rewrite import InstructionRewriter
from groundedit.stages.saliency import SaliencyFilter
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
        SaliencyFilter,
        RenderStage,
        InstructionWriter,
        InstructionRewriter,
        EditStage,
        QualityJudge,
        ExportStage,
        PairIngestStage,
        DifferenceStage,
        RegionProposer,
        SegmentStage,
        PairReasoner,
    )
}

__all__ = ["STAGES", "BaseStage", "RunContext", "SinkStage", "SourceStage", "Stage", "UnitIO"]
