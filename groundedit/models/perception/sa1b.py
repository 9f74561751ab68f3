"""Swap grounded masks for SA-1B annotation masks when an annotation matches the grounded box."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from groundedit.models.perception.nms import box_iou, mask_box
from groundedit.models.perception.objects import GroundedObject, rle_to_mask


def _as_mask(mask: np.ndarray | dict) -> np.ndarray:
    return rle_to_mask(mask) if isinstance(mask, dict) else np.asarray(mask, dtype=bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def match_sa1b_masks(
    objects: Sequence[GroundedObject],
    sa1b_masks: Sequence[np.ndarray | dict],
    iou_threshold: float,
    by: Literal["box", "mask"] = "box",
) -> list[GroundedObject]:
    """Replace each object's mask by its best-matching SA-1B mask when their IoU reaches ``iou_threshold``.

    ``sa1b_masks`` are boolean (H, W) arrays or COCO RLE dicts (RLEs need pycocotools). ``by="box"``
    compares the detector box with each annotation's tight box, so a weak SAM mask does not spoil the
    match; ``by="mask"`` compares the SAM mask with each annotation mask. A replaced object gets the
    annotation's mask and tight box, ``mask_source="sa1b"``, its index and the IoU; the others are
    returned unchanged. Several objects may match the same annotation.
    """
    masks = [_as_mask(m) for m in sa1b_masks]
    if not masks or not objects:
        return list(objects)
    boxes = [mask_box(m) for m in masks]
    out = []
    for obj in objects:
        if masks[0].shape != obj.mask.shape:
            raise ValueError(f"SA-1B masks are {masks[0].shape}, grounded masks {obj.mask.shape}")
        if by == "box":
            ious = [box_iou(obj.detector_box_xyxy, b)[0, 0] if b else 0.0 for b in boxes]
        else:
            ious = [mask_iou(obj.mask, m) for m in masks]
        best = int(np.argmax(ious))
        if ious[best] >= iou_threshold and boxes[best] is not None:
            obj = dataclasses.replace(
                obj,
                mask=masks[best],
                box_xyxy=boxes[best],
                mask_source="sa1b",
                sa1b_index=best,
                sa1b_iou=float(ious[best]),
            )
        out.append(obj)
    return out
