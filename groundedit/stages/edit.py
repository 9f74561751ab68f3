"""edit: carry out each instruction on the target only.

Non-removal edits crop the target box plus a context margin, edit the crop with the image editor
(Bagel) using the rewritten instruction, and blend it back with an alpha that is 1 over the target
and fades out towards the crop's inner edges, so nothing outside the crop changes. Removals inpaint
the dilated target mask (LaMa) inside a crop; nothing outside the dilated mask changes. Crops are
sorted by size before batching so each forward holds similar shapes. Every edit is measured — EGA
(share of changed pixels inside the target box), change outside the box, mean change inside it — and
the spec's thresholds may reject it; an edit that changes nothing is a failure too.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from groundedit.formats.tar import read_blob
from groundedit.image.codec import SampleError, encode_jpeg, encode_jpeg_rows
from groundedit.image.editing import blend, crop_window, dilate, edit_metrics
from groundedit.image.jpeg_rows import NotSpliceable, band_rows
from groundedit.image.pixels import source_image, target_mask
from groundedit.records import Sample, format_score
from groundedit.seeding import sampling_seed
from groundedit.stages.base import Stage, UnitIO


class EditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    margin_frac: float = Field(
        0.5, ge=0, description="context around the box, as a share of its longest side"
    )
    min_margin: int = Field(32, ge=0, description="context around the box, at least this many pixels")
    feather: int = Field(16, ge=0, description="blend ramp width at the crop's inner edges (<= min_margin)")
    removal_dilation: int = Field(
        9, ge=0, description="grow the target mask by this many pixels before inpainting"
    )
    steps: int = Field(50, ge=2)
    cfg_text_scale: float = 4.0
    cfg_img_scale: float = 2.0
    timestep_shift: float = 3.0
    editor_batch_size: int = Field(8, ge=1, description="edits per editor forward")
    change_threshold: int = Field(24, ge=0, le=255, description="a pixel changed if a channel moved by more")
    min_ega: float = Field(0.0, ge=0, le=1)
    max_change_outside: float = Field(1.0, ge=0, le=1)
    min_change_inside: float = Field(0.0, ge=0, le=1, description="reject edits that change (almost) nothing")
    jpeg_quality: int = Field(95, ge=50, le=100)

    @model_validator(mode="after")
    def _feather_inside_margin(self) -> EditParams:
        if self.feather > self.min_margin:
            raise ValueError("feather must not exceed min_margin, or the blend would fade over the target")
        return self


class EditStage(Stage):
    name = "edit"
    Params = EditParams
    uses_seed = True
    reads = ("key", "source", "target", "edit_type", "instructions")
    reads_if_present = ("artifacts.src.jpg",)  # spliced into rather than encoding edited.jpg whole
    writes = ("scores.ega", "scores.change_outside", "scores.change_inside", "artifacts.edited.jpg")

    def setup(self) -> None:
        from groundedit.models.editors import load_editor, load_inpainter
        from groundedit.models.hub import quiet_loading, resolve

        quiet_loading()
        self.editor = load_editor(self.spec.backend or "bagel", resolve(self.spec.model_ref("editor")))
        self.inpainter = load_inpainter("lama", resolve(self.spec.model_ref("inpainter")))

    def requirements(self):
        """The models, and inside a local Bagel folder each file the loader reads."""
        from pathlib import Path

        from groundedit.models.bagel.loading import REQUIRED_FILES
        from groundedit.models.hub import Requirement

        reqs = super().requirements()
        folder = Path(self.spec.models["editor"]).expanduser()
        if folder.is_dir():
            fix = (
                "copy it from the official folder (`hf download ByteDance-Seed/BAGEL-7B-MoT --local-dir DIR`)"
            )
            reqs += [
                Requirement(self.name, f"editor/{f}", str(folder / f), "file", fix) for f in REQUIRED_FILES
            ]
        return reqs

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out: list[Sample | None] = [None] * len(batch)
        sources: dict[int, np.ndarray] = {}
        edited: dict[int, tuple[np.ndarray, tuple[int, int, int, int]]] = {}  # result, window it changed
        to_edit: list[tuple[int, tuple[int, int, int, int]]] = []
        for i, s in enumerate(batch):
            try:
                rgb = sources[i] = np.asarray(source_image(s))
                if s.edit_type == "remove":
                    edited[i] = self._remove(rgb, target_mask(s), s)
                else:
                    to_edit.append(
                        (
                            i,
                            crop_window(
                                s.target.box_xyxy,
                                rgb.shape[1],
                                rgb.shape[0],
                                self.params.margin_frac,
                                self.params.min_margin,
                            ),
                        )
                    )
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
        edited.update(self._edit_crops(batch, sources, to_edit))
        for i, (result, window) in edited.items():
            out[i] = self._checked(batch[i], sources[i], result, window, io)
        return out

    def _remove(
        self, rgb: np.ndarray, mask: np.ndarray, s: Sample
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        p = self.params
        grown = dilate(mask, p.removal_dilation)
        x1, y1, x2, y2 = crop_window(
            s.target.box_xyxy, rgb.shape[1], rgb.shape[0], p.margin_frac, p.min_margin + p.removal_dilation
        )
        result = rgb.copy()
        result[y1:y2, x1:x2] = self.inpainter.inpaint(rgb[y1:y2, x1:x2], grown[y1:y2, x1:x2])
        return result, (x1, y1, x2, y2)

    def _edit_crops(self, batch, sources, to_edit) -> dict[int, tuple[np.ndarray, tuple[int, int, int, int]]]:
        if not to_edit:
            return {}
        p = self.params
        order = sorted(
            to_edit, key=lambda t: (t[1][2] - t[1][0]) * (t[1][3] - t[1][1])
        )  # similar sizes together
        crops = [Image.fromarray(sources[i][y1:y2, x1:x2]) for i, (x1, y1, x2, y2) in order]
        texts = [batch[i].instructions.rewritten or batch[i].instructions.original for i, _ in order]
        seeds = [sampling_seed(self.config.seed, f"edit:{batch[i].key}") for i, _ in order]
        results = self.editor.edit(
            crops,
            texts,
            seed=seeds,
            steps=p.steps,
            cfg_text_scale=p.cfg_text_scale,
            cfg_img_scale=p.cfg_img_scale,
            timestep_shift=p.timestep_shift,
            batch_size=p.editor_batch_size,
        )
        return {
            i: (blend(sources[i], np.asarray(im.convert("RGB")), crop, p.feather), crop)
            for (i, crop), im in zip(order, results, strict=True)
        }

    def _checked(self, s: Sample, src: np.ndarray, result: np.ndarray, window, io: UnitIO) -> Sample:
        p = self.params
        m = edit_metrics(src, result, s.target.box_xyxy, p.change_threshold, region=window)
        scores = s.scores.model_copy(
            update={
                "ega": round(m.ega, 4),
                "change_outside": round(m.change_outside, 5),
                "change_inside": round(m.change_inside, 4),
            }
        )
        s = s.model_copy(update={"scores": scores, "provenance": [*s.provenance, self.provenance()]})
        failed = [
            (m.change_inside < p.min_change_inside or m.changed_pixels == 0, "edit_changed_nothing"),
            (m.ega < p.min_ega, "edit_outside_target"),
            (m.change_outside > p.max_change_outside, "edit_leaked"),
        ]
        for bad, reason in failed:
            if bad:
                detail = (
                    f"EGA {format_score(m.ega)}, changed outside {format_score(m.change_outside)}, "
                    f"inside {format_score(m.change_inside)}"
                )
                return s.reject(self.name, reason, detail)
        ref = io.artifacts.add(f"{s.key}.edited.jpg", self._encode(s, result, window, io))
        return s.model_copy(update={"artifacts": {**s.artifacts, "edited.jpg": ref}})

    def _encode(self, s: Sample, result: np.ndarray, window, io: UnitIO) -> bytes:
        """``edited.jpg``: the edit changed rows of ``window`` only, so only they are encoded and
        spliced into ``src.jpg`` (the same bytes as a full encode; :mod:`groundedit.image.jpeg_rows`). A
        ``src.jpg`` written otherwise (another quality, an older run) gets the full encode."""
        q = self.params.jpeg_quality
        top, bottom = band_rows(window[1], window[3], result.shape[0])
        if "src.jpg" in s.artifacts:
            try:
                return encode_jpeg_rows(read_blob(s.artifacts["src.jpg"], io.out), result[top:bottom], top, q)
            except NotSpliceable:
                pass
        return encode_jpeg(result, q)
