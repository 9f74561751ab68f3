"""render: decode the source once and write the images a sample exports.

Per sample, into the unit's artifact tar: ``src.jpg`` (the source, EXIF-oriented, at the size ingest
recorded, as 8-bit RGB), ``grounded.jpg`` (the target under a red mask at 50% opacity plus its red
box) and ``mask.png``.
Both JPEGs are encoded with the same fixed settings from the same pixels, so they decode to equal
pixels outside the box (up to the JPEG blocks the box touches).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from groundedit import masks
from groundedit.imaging import SampleError, encode_jpeg, encode_mask_png
from groundedit.overlay import MASK_OPACITY, draw_grounding
from groundedit.pixels import source_image
from groundedit.records import Sample
from groundedit.stages.base import Stage, UnitIO


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jpeg_quality: int = Field(95, ge=50, le=100)
    mask_opacity: float = Field(MASK_OPACITY, gt=0, le=1)


class RenderStage(Stage):
    name = "render"
    Params = RenderParams

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out = []
        for s in batch:
            try:
                out.append(self._render(s, io))
            except SampleError as e:
                out.append(s.reject(self.name, e.reason, e.detail))
        return out

    def _render(self, s: Sample, io: UnitIO) -> Sample:
        image = source_image(s)
        q = self.params.jpeg_quality
        src_jpg = encode_jpeg(image, q)
        mask = masks.decode(s.target.mask)
        grounded = draw_grounding(
            np.array(image), mask, s.target.box_xyxy, self.params.mask_opacity, in_place=True
        )
        refs = {
            "src.jpg": io.artifacts.add(f"{s.key}.src.jpg", src_jpg),
            "grounded.jpg": io.artifacts.add(f"{s.key}.grounded.jpg", encode_jpeg(grounded, q)),
            "mask.png": io.artifacts.add(f"{s.key}.mask.png", encode_mask_png(mask)),
        }
        return s.model_copy(
            update={"artifacts": {**s.artifacts, **refs}, "provenance": [*s.provenance, self.provenance()]}
        )
