"""segment: the precise mask of an edit pair's region (GVCoT's mask step), from SAM prompted with
the region's box.

Which picture SAM looks at follows what the edit did (``localize``'s kind; ``change`` without it):

- ``remove``: the source — the mask is the object as it was before it went;
- ``add``: the target — the mask is the new object;
- ``change``: the source — the object that changed, cut to the pixel difference (dilated by
  ``change_dilation``), so a part of the object the edit left alone is not claimed.

SAM's mask is used when it agrees with the pixel difference (IoU >= ``min_sam_iou``): SAM's edges
follow the object where the difference fades (a removal whose fill matched parts of what was there);
otherwise the pixel difference is the mask. The region records which (``mask_source``) and the IoU.
The tiny profile's random SAM never decides (``min_sam_iou: 1.0``).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from groundedit.image import masks
from groundedit.image.codec import SampleError
from groundedit.image.difference import mask_iou
from groundedit.image.editing import dilate
from groundedit.image.pixels import source_image, target_image
from groundedit.records import Sample
from groundedit.stages.base import Stage, UnitIO


class SegmentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_sam_iou: float = Field(0.5, ge=0.0, le=1.0, description="use SAM's mask when it agrees this well")
    change_dilation: int = Field(3, ge=0, description="px the difference grows by before cutting a change")
    sam_batch_size: int = Field(4, ge=1)
    dtype: str | None = Field(None, description="default: bf16 on CUDA, float32 on CPU")


def segmented_image(s: Sample) -> np.ndarray:
    kind = s.pair.region.edit_kind or "change"
    return np.asarray(target_image(s) if kind == "add" else source_image(s))


class SegmentStage(Stage):
    name = "segment"
    Params = SegmentParams
    reads = ("key", "source", "pair", "target")
    writes = ("pair.region", "target")

    def setup(self) -> None:
        from groundedit.models.hub import quiet_loading, resolve
        from groundedit.models.perception.sam import SamSegmenter

        quiet_loading()
        self.sam = SamSegmenter.from_pretrained(
            resolve(self.spec.model_ref("sam")),
            dtype=self.params.dtype,
            batch_size=self.params.sam_batch_size,
        )

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out: list[Sample | None] = [None] * len(batch)
        todo, images = [], []
        for i, s in enumerate(batch):
            if s.pair.global_edit:
                out[i] = s
                continue
            try:
                images.append(segmented_image(s))
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            todo.append(i)
        boxes = [np.array([batch[i].pair.region.pixel_box], dtype=np.float32) for i in todo]
        results = self.sam.segment(images, boxes) if todo else []
        for i, (found, _) in zip(todo, results, strict=True):
            out[i] = self._decide(batch[i], found[0])
        return out

    def _decide(self, s: Sample, sam: np.ndarray) -> Sample:
        region = s.pair.region
        pixel = masks.decode(region.pixel_mask)
        kind = region.edit_kind or "change"
        agreement = round(mask_iou(sam, pixel), 4)
        mask, source = pixel, "difference"
        if agreement >= self.params.min_sam_iou:
            cut = sam & dilate(pixel, self.params.change_dilation) if kind == "change" else sam
            if cut.any():
                mask, source = cut, "sam"
        rle = masks.encode(mask)
        region = region.model_copy(update={"mask_source": source, "sam_iou": agreement})
        target = s.target.model_copy(
            update={"box_xyxy": masks.bbox_xyxy(rle), "mask": rle, "area": int(mask.sum())}
        )
        return s.model_copy(
            update={
                "pair": s.pair.model_copy(update={"region": region}),
                "target": target,
                "provenance": [*s.provenance, self.provenance()],
            }
        )
