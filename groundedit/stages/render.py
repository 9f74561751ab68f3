"""render: decode the source once and write the images a sample exports.

Per sample, into the unit's artifact tar: ``src.jpg`` (the source, EXIF-oriented, at the size ingest
recorded, as 8-bit RGB), ``grounded.jpg`` (the target under a red mask at 50% opacity plus its red
box) and ``mask.png`` (an edit pair's ``edited.jpg`` is written by ``difference``).
Both JPEGs are encoded with the same fixed settings from the same pixels; ``grounded.jpg`` is
``src.jpg`` with only the MCU rows that cross the box re-encoded (:mod:`groundedit.image.jpeg_rows`), the
same bytes a full encode gives at a fraction of its cost. So the two decode to equal pixels outside
the box (up to the JPEG blocks the box touches).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from groundedit.image import masks
from groundedit.image.codec import SampleError, encode_jpeg, encode_jpeg_rows, encode_mask_png
from groundedit.image.jpeg_rows import band_rows
from groundedit.image.overlay import MASK_OPACITY, draw_grounding, line_width
from groundedit.image.pixels import source_image
from groundedit.records import Sample
from groundedit.stages.base import Stage, UnitIO


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jpeg_quality: int = Field(95, ge=50, le=100)
    mask_opacity: float = Field(MASK_OPACITY, gt=0, le=1)


class RenderStage(Stage):
    name = "render"
    Params = RenderParams
    reads = ("key", "source", "target")
    writes = ("artifacts.src.jpg", "artifacts.grounded.jpg", "artifacts.mask.png")

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
        x1, y1, x2, y2 = s.target.box_xyxy
        top, bottom = band_rows(y1, y2, image.height)  # everything is drawn inside the box
        band = draw_grounding(
            np.array(image.crop((0, top, image.width, bottom))),
            mask[top:bottom],
            (x1, y1 - top, x2, y2 - top),
            self.params.mask_opacity,
            width=line_width(image.height, image.width),
            in_place=True,
        )
        refs = {
            "src.jpg": io.artifacts.add(f"{s.key}.src.jpg", src_jpg),
            "grounded.jpg": io.artifacts.add(
                f"{s.key}.grounded.jpg", encode_jpeg_rows(src_jpg, band, top, q)
            ),
            "mask.png": io.artifacts.add(f"{s.key}.mask.png", encode_mask_png(mask)),
        }
        return s.model_copy(
            update={"artifacts": {**s.artifacts, **refs}, "provenance": [*s.provenance, self.provenance()]}
        )
