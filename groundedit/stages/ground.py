"""ground: boxes for the image's tags (Grounding DINO), masks for the boxes (SAM), as candidates.

Prompts are the RAM++ tags, chunked under the text limit; boxes and phrases are thresholded, run
through class-agnostic NMS, mapped back to tags through token offsets, and segmented with one SAM
call per image. Each kept object becomes a ``grounded-sam`` candidate whose box is the tight bound
of its mask. With ``sa1b_iou_threshold`` set and SA-1B annotations present, an object whose detector
box matches an SA-1B mask's box that well takes the SA-1B mask (often sharper), and the SA-1B
candidate takes the object's tag as its label (the best-matching one when several match); SA-1B
candidates no detection matched keep no label. Dropped detections are counted by reason in the
stage's provenance.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from groundedit.image import masks
from groundedit.image.pixels import decode_batch
from groundedit.records import Candidate, Sample
from groundedit.stages.base import Stage, UnitIO


class GroundParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    box_threshold: float = Field(0.25, ge=0, le=1, description="Grounded-SAM's RAM demo: 0.25")
    text_threshold: float = Field(0.2, ge=0, le=1, description="Grounded-SAM's RAM demo: 0.2")
    nms_iou: float = Field(0.5, gt=0, le=1)
    min_mask_score: float = Field(0.5, description="drop masks SAM itself scores below this (predicted IoU)")
    max_objects: int | None = Field(None, ge=1, description="keep the best N boxes per image after NMS")
    max_text_tokens: int | None = Field(
        None, ge=8, description="prompt chunk length; default: the model's limit"
    )
    sa1b_iou_threshold: float | None = Field(
        None, gt=0, le=1, description="use SA-1B masks whose box matches this well"
    )
    dino_batch_size: int = Field(8, ge=1)
    sam_batch_size: int = Field(4, ge=1)
    dtype: str | None = Field(None, description="default: bf16 on CUDA, float32 on CPU")


class GroundStage(Stage):
    name = "ground"
    Params = GroundParams
    reads = ("source", "tags")
    reads_if_present = ("candidates",)  # SA-1B candidates: kept, labelled, their masks reused
    writes = ("candidates",)

    def setup(self) -> None:
        from groundedit.models.hub import quiet_loading, resolve
        from groundedit.models.perception import Grounder

        quiet_loading()
        p = self.params
        self.grounder = Grounder.from_pretrained(
            resolve(self.spec.model_ref("dino")),
            resolve(self.spec.model_ref("sam")),
            dtype=p.dtype,
            box_threshold=p.box_threshold,
            text_threshold=p.text_threshold,
            nms_iou=p.nms_iou,
            min_mask_score=p.min_mask_score,
            max_objects=p.max_objects,
            max_text_tokens=p.max_text_tokens,
            dino_batch_size=p.dino_batch_size,
            sam_batch_size=p.sam_batch_size,
        )

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out, images, where = decode_batch(batch, self.name)
        tags = [[t.name for t in batch[i].tags] for i in where]
        results = self.grounder.ground(images, tags) if images else []
        for i, res in zip(where, results, strict=True):
            s = batch[i]
            known, found, matched = self._candidates(s, res.objects)
            counts = Counter(res.dropped)
            if matched:
                counts["sa1b_mask_used"] = matched
            prov = self.provenance(counts=dict(counts))
            out[i] = s.model_copy(
                update={"candidates": [*known, *found], "provenance": [*s.provenance, prov]}
            )
        return out

    def _candidates(self, s: Sample, objects) -> tuple[list[Candidate], list[Candidate], int]:
        """(the sample's candidates with matched SA-1B ones labelled, the new candidates, matches)."""
        from groundedit.models.perception.nms import box_iou

        known = list(s.candidates)
        sa1b = [i for i, c in enumerate(known) if c.source == "sa1b"]
        thr = self.params.sa1b_iou_threshold
        ious = None
        if thr is not None and sa1b and objects:
            ious = box_iou(
                np.array([o.detector_box_xyxy for o in objects]), np.array([known[i].box_xyxy for i in sa1b])
            )
        found, matched = [], 0
        best: dict[int, tuple[float, str]] = {}  # SA-1B candidate index -> (IoU, label) of its best match
        for k, obj in enumerate(objects):
            j = int(ious[k].argmax()) if ious is not None else -1
            if j >= 0 and ious[k, j] >= thr:
                c = known[sa1b[j]]
                rle, box, area, matched = c.mask, c.box_xyxy, c.area, matched + 1
                if ious[k, j] > best.get(j, (-1.0, ""))[0]:
                    best[j] = (float(ious[k, j]), obj.label)
            else:
                rle = masks.encode(obj.mask)
                box, area = masks.bbox_of(obj.mask), int(obj.mask.sum())
            found.append(
                Candidate(
                    id=f"gs{k}",
                    source="grounded-sam",
                    label=obj.label,
                    box_xyxy=box,
                    mask=rle,
                    area=area,
                    score=round(float(obj.box_score), 4),
                    text_score=round(float(obj.text_score), 4),
                    predicted_iou=round(float(obj.mask_score), 4),
                )
            )
        for j, (_, label) in best.items():
            known[sa1b[j]] = known[sa1b[j]].model_copy(update={"label": label})
        return known, found, matched
