"""Grounding: RAM++ tags -> Grounding DINO boxes -> class-agnostic NMS -> SAM masks -> grounded objects."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from groundedit.models.perception.nms import mask_box, nms
from groundedit.models.perception.objects import GroundedObject, GroundingResult


class Grounder:
    """Boxes and masks for given tags, with every threshold explicit.

    Defaults are Grounded-SAM's RAM demo (box 0.25, text 0.2, NMS IoU 0.5). ``min_mask_score`` drops
    masks whose SAM-predicted IoU is below it; ``max_objects`` keeps the best-scoring boxes per image
    after NMS (bounds SAM decoder work); ``sa1b_iou_threshold`` turns on SA-1B mask matching for images
    given annotation masks (see :func:`match_sa1b_masks`).
    """

    def __init__(
        self,
        detector,
        segmenter,
        box_threshold: float = 0.25,
        text_threshold: float = 0.2,
        nms_iou: float = 0.5,
        min_mask_score: float = 0.5,
        max_objects: int | None = None,
        sa1b_iou_threshold: float | None = None,
        sa1b_match_by: Literal["box", "mask"] = "box",
    ):
        self.detector = detector
        self.segmenter = segmenter
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.nms_iou = nms_iou
        self.min_mask_score = min_mask_score
        self.max_objects = max_objects
        self.sa1b_iou_threshold = sa1b_iou_threshold
        self.sa1b_match_by = sa1b_match_by

    @classmethod
    def from_pretrained(
        cls,
        dino: str | Path,
        sam: str | Path,
        device=None,
        dtype=None,
        max_text_tokens: int | None = None,
        dino_batch_size: int = 8,
        sam_batch_size: int = 4,
        **thresholds,
    ) -> Grounder:
        """Load Grounding DINO and SAM from hub ids or ``save_pretrained`` directories."""
        from groundedit.models.perception.grounding_dino import GroundingDinoDetector
        from groundedit.models.perception.sam import SamSegmenter

        detector = GroundingDinoDetector.from_pretrained(
            dino, device=device, dtype=dtype, max_text_tokens=max_text_tokens, batch_size=dino_batch_size
        )
        segmenter = SamSegmenter.from_pretrained(sam, device=device, dtype=dtype, batch_size=sam_batch_size)
        return cls(detector, segmenter, **thresholds)

    def ground(
        self,
        images: Sequence[np.ndarray],
        tags: Sequence[Sequence[str]],
        sa1b_masks: Sequence[Sequence[np.ndarray | dict] | None] | None = None,
    ) -> list[GroundingResult]:
        """Ground each image's tags; ``sa1b_masks[i]`` (masks or RLEs) enables matching for image ``i``."""
        if len(images) != len(tags):
            raise ValueError(f"{len(images)} images but {len(tags)} tag lists")
        detections = self.detector.detect(images, tags, self.box_threshold, self.text_threshold)
        chosen, results = [], []
        for dets, dropped in detections:
            dets, dropped = self._select(dets, Counter(dropped))
            chosen.append(dets)
            results.append(GroundingResult(dropped=dropped))
        boxes = [np.asarray([d.box_xyxy for d in dets], dtype=np.float32).reshape(-1, 4) for dets in chosen]
        for i, (masks, mask_scores) in enumerate(self.segmenter.segment(images, boxes)):
            for det, mask, mask_score in zip(chosen[i], masks, mask_scores, strict=True):
                box = mask_box(mask)
                if box is None:
                    results[i].dropped["empty_mask"] += 1
                elif mask_score < self.min_mask_score:
                    results[i].dropped["low_mask_score"] += 1
                else:
                    results[i].objects.append(
                        GroundedObject(
                            label=det.tag,
                            box_xyxy=box,
                            box_score=det.box_score,
                            text_score=det.text_score,
                            mask=mask,
                            mask_score=float(mask_score),
                            detector_box_xyxy=det.box_xyxy,
                        )
                    )
            if self.sa1b_iou_threshold is not None and sa1b_masks is not None and sa1b_masks[i] is not None:
                from groundedit.models.perception.sa1b import match_sa1b_masks

                results[i].objects = match_sa1b_masks(
                    results[i].objects, sa1b_masks[i], self.sa1b_iou_threshold, by=self.sa1b_match_by
                )
        return results

    def _select(self, dets, dropped: Counter):
        """Class-agnostic NMS over all of an image's prompts, then the ``max_objects`` best."""
        if not dets:
            return [], dropped
        keep = nms(
            np.asarray([d.box_xyxy for d in dets]), np.asarray([d.box_score for d in dets]), self.nms_iou
        )
        if len(keep) < len(dets):
            dropped["nms_suppressed"] += len(dets) - len(keep)
        if self.max_objects is not None and len(keep) > self.max_objects:
            dropped["over_max_objects"] += len(keep) - self.max_objects
            keep = keep[: self.max_objects]
        return [dets[k] for k in keep], dropped
