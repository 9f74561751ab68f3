"""What grounding produces: objects with a tag, a box, a mask and their scores, plus drop counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a boolean (H, W) mask: ``{"size": [H, W], "counts": str}`` (as SA-1B stores masks)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Boolean (H, W) mask from a COCO RLE (``counts`` as str or bytes, compressed or not)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(counts, str):
        rle = {"size": rle["size"], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


@dataclass
class GroundedObject:
    """One grounded candidate in one image.

    ``box_xyxy`` is the tight box of ``mask`` in pixel edges (``x1`` = last mask column + 1), so box
    and mask always agree; ``detector_box_xyxy`` is Grounding DINO's box (clipped to the image) that
    prompted SAM. ``mask_source`` is ``"sam"``, or ``"sa1b"`` when an SA-1B annotation replaced it.
    """

    label: str
    box_xyxy: tuple[float, float, float, float]
    box_score: float
    text_score: float
    mask: np.ndarray
    mask_score: float
    detector_box_xyxy: tuple[float, float, float, float]
    mask_source: str = "sam"
    sa1b_index: int | None = None
    sa1b_iou: float | None = None

    @property
    def area(self) -> int:
        """Mask area in pixels."""
        return int(self.mask.sum())

    def to_rle(self) -> dict:
        """The mask as COCO RLE (needs pycocotools)."""
        return mask_to_rle(self.mask)


@dataclass
class GroundingResult:
    """Grounding output for one image: kept objects, and how many candidates were dropped, by reason.

    Reasons: ``no_tag_above_text_threshold``, ``nms_suppressed``, ``over_max_objects``,
    ``low_mask_score``, ``empty_mask`` (per detector box that passed the box threshold) and
    ``tag_too_long`` (per tag that fits no prompt).
    """

    objects: list[GroundedObject] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
