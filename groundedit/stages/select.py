"""select: choose one editing target per image, at random among candidates that pass thresholds.

The draw depends only on the run seed and the sample key (a hash seeds the generator), so the
same target comes out whatever the executor, batch size or order. The candidate list is dropped
after selection; ``num_candidates`` keeps its size.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from groundedit.image import masks
from groundedit.image.codec import SampleError
from groundedit.records import Candidate, CandidateSource, Sample
from groundedit.seeding import draw_seed
from groundedit.stages.base import Stage, UnitIO


class SelectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[CandidateSource] = Field(
        default_factory=lambda: ["grounded-sam"], description="candidate sources to draw from"
    )
    source_priority: bool = Field(
        False, description="draw from the first listed source that has an eligible candidate, not from all"
    )
    min_area_frac: float = Field(0.002, ge=0, le=1, description="smallest mask, as a share of the image")
    max_area_frac: float = Field(0.2, ge=0, le=1, description="largest mask: big targets are too salient")
    min_score: float = Field(0.0, ge=0, description="minimum candidate score (SA-1B: predicted IoU)")
    min_predicted_iou: float = Field(0.85, ge=0, le=1, description="SA-1B candidates only")
    min_stability_score: float = Field(0.9, ge=0, le=1, description="SA-1B candidates only")
    min_box_side: int = Field(8, ge=1, description="smallest box side in pixels")


class SelectStage(Stage):
    name = "select"
    Params = SelectParams
    uses_seed = True
    reads = ("key", "source", "candidates")
    writes = ("target", "num_candidates", "candidates")

    def eligible(self, c: Candidate, image_area: int) -> bool:
        p = self.params
        x1, y1, x2, y2 = c.box_xyxy
        ok = (
            c.source in p.sources
            and p.min_area_frac * image_area <= c.area <= p.max_area_frac * image_area
            and c.score >= p.min_score
            and min(x2 - x1, y2 - y1) >= p.min_box_side
        )
        if ok and c.source == "sa1b":
            ok = (c.predicted_iou is None or c.predicted_iou >= p.min_predicted_iou) and (
                c.stability_score is None or c.stability_score >= p.min_stability_score
            )
        return ok

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        return [self._select(s) for s in batch]

    def _select(self, s: Sample) -> Sample:
        area = s.source.width * s.source.height
        pool = sorted((c for c in s.candidates if self.eligible(c, area)), key=lambda c: (c.source, c.id))
        if self.params.source_priority and pool:
            first = next(src for src in self.params.sources if any(c.source == src for c in pool))
            pool = [c for c in pool if c.source == first]
        slim = {"candidates": [], "num_candidates": len(s.candidates)}
        if not pool:
            detail = f"{len(s.candidates)} candidates, none within the thresholds"
            return s.model_copy(update=slim).reject(self.name, "no_eligible_target", detail)
        target = random.Random(draw_seed(self.config.seed, s.key)).choice(pool)
        try:
            masks.check_rle(target.mask)
        except SampleError as e:
            return s.model_copy(update=slim).reject(self.name, e.reason, f"candidate {target.id}: {e.detail}")
        target = target.model_copy(update={"box_xyxy": masks.bbox_xyxy(target.mask)})
        return s.model_copy(
            update={**slim, "target": target, "provenance": [*s.provenance, self.provenance()]}
        )
