"""ingest: input files → samples with source metadata and SA-1B candidates.

Reads image headers (size, EXIF orientation, pixel cap) and checks from each file's structure that
it holds its image to the end (:func:`groundedit.image.codec.check_complete`: a search, not a decode),
so a truncated file is rejected here rather than by a model stage; a complete file whose data is
corrupt is rejected by the first stage that decodes it. SA-1B annotations are parsed
and checked against the image, and their masks moved into the displayed (EXIF-oriented) frame.
The digest of every input file it reads is recorded in the sample, so later stages can tell when
an input changed under the run.

With ``max_side`` set, an image whose longer side is larger is not rejected but downscaled: the
sample's ``source.width``/``height`` become the scaled size (``original_size`` keeps the file's),
every stage decodes the file to that size (``pixels.source_image``), and SA-1B masks are scaled here
to match.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
from pycocotools import mask as mask_utils
from pydantic import BaseModel, ConfigDict, Field

from groundedit.formats.listing import TarListings
from groundedit.formats.scan import KeyIndex, PlannedUnit, iter_planned
from groundedit.formats.tar import blob_digest, read_blob
from groundedit.image import masks
from groundedit.image.codec import (
    SampleError,
    check_complete,
    exif_orientation,
    fit_within,
    open_image,
    oriented_size,
)
from groundedit.records import RLE, BlobRef, Candidate, Sample, Source, SourceEntry
from groundedit.stages.base import SourceStage, UnitIO


class IngestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_size: int = Field(256, ge=1, description="images per unit (the grain of resume and parallelism)")
    max_pixels: int = Field(40_000_000, ge=1, description="reject files with more pixels (a decode-cost cap)")
    max_side: int | None = Field(
        None, ge=16, description="downscale images whose longer side is larger to this side (None: keep size)"
    )
    min_side: int = Field(16, ge=1, description="reject images with a shorter side")
    max_annotation_bytes: int = Field(64 << 20, ge=1, description="reject larger annotation JSON files")


class IngestStage(SourceStage):
    name = "ingest"
    Params = IngestParams
    writes = ("key", "source", "candidates")  # SA-1B annotations: candidates before any model

    def plan(self, keys: KeyIndex, listings: TarListings | None = None) -> Iterator[PlannedUnit]:
        return iter_planned(
            self.config.input,
            self.params.unit_size,
            self.config.limit,
            keys,
            exclude=self.config.out,
            listings=listings,
        )

    def reject_entry(self, entry: SourceEntry, reason: str, detail: str) -> Sample:
        source = Source(
            dataset=entry.dataset,
            image_id=entry.key,
            file_name=entry.file_name,
            width=0,
            height=0,
            image=entry.image,
            annotation=entry.annotation,
        )
        return Sample(key=entry.key, source=source).reject(self.name, reason, detail)

    def process_batch(self, batch: list[SourceEntry], io: UnitIO) -> list[Sample]:
        out = []
        for entry in batch:
            if entry.error:
                out.append(self.reject_entry(entry, entry.error, entry.error_detail))
                continue
            try:
                out.append(self._read(entry))
            except SampleError as e:
                out.append(self.reject_entry(entry, e.reason, e.detail))
        return out

    def _read(self, entry: SourceEntry) -> Sample:
        data = read_blob(entry.image)
        entry = entry.model_copy(update={"image": _with_digest(entry.image, data)})
        im = open_image(data, self.params.max_pixels)
        raw_size, orientation, shown = im.size, exif_orientation(im), oriented_size(im)
        width, height = fit_within(shown, self.params.max_side)
        if min(width, height) < self.params.min_side:
            raise SampleError("image_too_small", f"{width}x{height} < {self.params.min_side} px")
        check_complete(data, im)
        image_id = entry.key
        candidates: list[Candidate] = []
        if entry.annotation is not None:
            image_id, candidates = self._annotations(entry, raw_size, shown, orientation, (width, height))
        source = Source(
            dataset=entry.dataset,
            image_id=image_id,
            file_name=entry.file_name,
            width=width,
            height=height,
            original_size=shown if shown != (width, height) else None,
            orientation=orientation,
            image=entry.image,
            annotation=entry.annotation,
        )
        return Sample(key=entry.key, source=source, candidates=candidates, provenance=[self.provenance()])

    def _annotations(self, entry, raw_size, shown_size, orientation, size) -> tuple[str, list[Candidate]]:
        if entry.annotation.size is not None and entry.annotation.size > self.params.max_annotation_bytes:
            raise SampleError("annotation_too_large", f"{entry.annotation.size} bytes")
        data = read_blob(entry.annotation)
        entry.annotation = _with_digest(entry.annotation, data)
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SampleError("annotation_json_invalid", str(e)) from e
        if not isinstance(doc, dict) or not isinstance(doc.get("image"), dict):
            raise SampleError("annotation_json_invalid", "no 'image' object")
        if not isinstance(doc.get("annotations"), list):
            raise SampleError("annotations_missing", "no 'annotations' list")
        info = doc["image"]
        try:
            declared = (int(info["width"]), int(info["height"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SampleError("annotation_json_invalid", f"image width/height: {e}") from e
        # Annotations describe the stored raster unless their size only fits the displayed one.
        if declared == raw_size:
            to_apply = orientation
        elif declared == shown_size:
            to_apply = 1
        else:
            raise SampleError(
                "annotation_size_mismatch",
                f"annotation says {declared[0]}x{declared[1]}, image is {raw_size}",
            )
        image_id = str(info.get("image_id", entry.key))
        return image_id, self._candidates(doc["annotations"], declared, to_apply, size)

    def _candidates(
        self, anns: list, declared: tuple[int, int], orientation: int, size: tuple[int, int]
    ) -> list[Candidate]:
        """Candidates from SA-1B annotations drawn on a ``declared`` raster, moved into the displayed
        frame (``orientation``) and scaled to ``size`` (width, height)."""
        rles: list[RLE] = []
        kept: list[dict] = []
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict) or "segmentation" not in ann:
                raise SampleError("annotation_json_invalid", f"annotation {i} has no segmentation")
            rle = masks.rle_from_json(ann["segmentation"])
            if (rle.size[1], rle.size[0]) != declared:
                raise SampleError(
                    "rle_size_mismatch",
                    f"annotation {ann.get('id', i)}: mask {rle.size[1]}x{rle.size[0]}, image {declared[0]}x{declared[1]}",
                )
            if orientation != 1 or rle.size != (size[1], size[0]):
                masks.check_rle(rle)  # pycocotools decodes corrupt counts past its buffer
                m = masks.apply_orientation(masks.decode(rle), orientation)
                if m.shape != (size[1], size[0]):
                    m = masks.resize(m, size)
                rle = masks.encode(m)
            rles.append(rle)
            kept.append(ann)
        if not rles:
            return []
        coco = [{"size": list(r.size), "counts": r.counts.encode("ascii")} for r in rles]
        areas = mask_utils.area(coco)
        boxes = np.round(mask_utils.toBbox(coco)).astype(int)
        out = []
        for ann, rle, a, (x, y, w, h) in zip(kept, rles, areas, boxes, strict=True):
            if a <= 0:
                continue
            iou = _float(ann.get("predicted_iou"))
            out.append(
                Candidate(
                    id=str(ann.get("id", len(out))),
                    source="sa1b",
                    box_xyxy=(x, y, x + w, y + h),
                    mask=rle,
                    area=int(a),
                    score=iou if iou is not None else 1.0,
                    predicted_iou=iou,
                    stability_score=_float(ann.get("stability_score")),
                )
            )
        return out


def _with_digest(ref: BlobRef, data: bytes) -> BlobRef:
    return ref if ref.digest is not None else ref.model_copy(update={"digest": blob_digest(data)})


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
