"""difference: an edit pair's pixel proposal of its edit region (GVCoT's edit-region mining, the
model-free half).

Source and target, in the same frame, are compared by perceptual colour difference
(:func:`groundedit.image.difference.change_region`). A pair whose cleaned difference covers less than
``min_fraction`` of the picture is ``no_change``; one where more than ``global_fraction`` of the
pixels changed is a global edit (style, light, weather): rejected as ``global_edit``, or with
``keep_global`` kept for reasoning with the whole picture as its region. Otherwise the difference is
the sample's provisional target (``candidate_source: mined``), which ``localize`` checks and
``segment`` makes precise.

A pair it keeps gets ``edited.jpg``: the given target in the source's frame (a rescale undone), the
very pixels the difference was taken on, encoded as ``render`` encodes ``src.jpg``. It is written
here rather than in ``render`` because only this recipe has it, and a shared stage's contract says
what it writes in every recipe.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from groundedit.image import masks
from groundedit.image.codec import SampleError, encode_jpeg
from groundedit.image.difference import ChangeParams, change_region
from groundedit.image.pixels import source_image, target_image
from groundedit.records import Candidate, MinedRegion, Sample, format_score
from groundedit.stages.base import Stage, UnitIO


class DifferenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(12.0, gt=0, description="CIELAB ΔE above which a pixel changed")
    blur_sigma: float = Field(1.0, ge=0, description="Gaussian blur before comparing (JPEG noise)")
    open_radius: int = Field(1, ge=0)
    close_radius: int = Field(2, ge=0)
    min_component: float = Field(
        0.001, ge=0, le=1, description="smaller components are noise (share of image)"
    )
    min_fraction: float = Field(0.002, ge=0, le=1, description="less changed than this: no_change")
    global_fraction: float = Field(
        0.5, gt=0, le=1, description="more pixels changed than this: a global edit"
    )
    keep_global: bool = Field(
        False, description="keep global edits (whole picture as region) instead of rejecting"
    )
    jpeg_quality: int = Field(95, ge=50, le=100, description="of edited.jpg (render's for src.jpg)")


def whole_image(width: int, height: int) -> Candidate:
    full = np.ones((height, width), dtype=bool)
    return Candidate(
        id="whole-image",
        source="whole-image",
        box_xyxy=(0, 0, width, height),
        mask=masks.encode(full),
        area=width * height,
        score=1.0,
    )


class DifferenceStage(Stage):
    name = "difference"
    Params = DifferenceParams
    reads = ("key", "source", "pair")
    # the pair's mining state: its region, or for a kept global edit the flag
    writes = ("target", "pair", "artifacts.edited.jpg")

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out = []
        for s in batch:
            try:
                out.append(self._mine(s, io))
            except SampleError as e:
                out.append(s.reject(self.name, e.reason, e.detail))
        return out

    def _mine(self, s: Sample, io: UnitIO) -> Sample:
        p = self.params
        target_picture = target_image(s)
        src, tgt = np.asarray(source_image(s)), np.asarray(target_picture)
        found = change_region(
            src, tgt, ChangeParams(p.threshold, p.blur_sigma, p.open_radius, p.close_radius, p.min_component)
        )
        s = s.model_copy(update={"provenance": [*s.provenance, self.provenance()]})
        if found.raw_fraction > p.global_fraction:
            detail = f"{format_score(found.raw_fraction)} of the pixels changed (> {format_score(p.global_fraction)})"
            if not p.keep_global:
                return s.reject(self.name, "global_edit", detail)
            pair = s.pair.model_copy(update={"global_edit": True})
            return s.model_copy(
                update={
                    "pair": pair,
                    "target": whole_image(s.source.width, s.source.height),
                    "artifacts": self._edited(s, target_picture, io),
                }
            )
        if found.box is None or found.fraction < p.min_fraction:
            detail = (
                f"{format_score(found.fraction)} of the picture changed (< {format_score(p.min_fraction)})"
            )
            return s.reject(self.name, "no_change", detail)
        rle = masks.encode(found.mask)
        region = MinedRegion(
            pixel_box=found.box,
            pixel_area=int(found.mask.sum()),
            pixel_mask=rle,
            changed_fraction=round(found.raw_fraction, 5),
            components=found.components,
            mean_delta_e=round(found.mean_delta, 3),
        )
        target = Candidate(
            id="mined",
            source="mined",
            box_xyxy=found.box,
            mask=rle,
            area=region.pixel_area,
            score=1.0,
        )
        return s.model_copy(
            update={
                "pair": s.pair.model_copy(update={"region": region}),
                "target": target,
                "artifacts": self._edited(s, target_picture, io),
            }
        )

    def _edited(self, s: Sample, picture, io: UnitIO) -> dict:
        data = encode_jpeg(picture, self.params.jpeg_quality)
        return {**s.artifacts, "edited.jpg": io.artifacts.add(f"{s.key}.edited.jpg", data)}
