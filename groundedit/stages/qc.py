"""qc: the VLM judges each edit — original and edited photo, both with the target's red box, plus
the instruction — with two 1.0-5.0 scores; samples below the spec's thresholds are dropped."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import Field

from groundedit.image.codec import SampleError
from groundedit.image.overlay import draw_box
from groundedit.image.pixels import artifact_image
from groundedit.records import Sample, format_score
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatParams, ChatStage


class QcParams(ChatParams):
    min_region_edit_accuracy: float = Field(3.5, ge=1.0, le=5.0)
    min_seamless_quality: float = Field(3.5, ge=1.0, le=5.0)


class QcStage(ChatStage):
    name = "qc"
    Params = QcParams
    reads = ("key", "source", "target", "instructions", "artifacts.src.jpg", "artifacts.edited.jpg")
    writes = ("scores.region_edit_accuracy", "scores.seamless_quality")

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import QCAnswer, ask_validated, qc_request

        out: list[Sample | None] = [None] * len(batch)
        asks = []
        for i, s in enumerate(batch):
            try:
                box = s.target.box_xyxy
                before = draw_box(np.asarray(artifact_image(s, "src.jpg", self.config.out)), box)
                after = draw_box(np.asarray(artifact_image(s, "edited.jpg", self.config.out)), box)
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            instruction = s.instructions.rewritten or s.instructions.original
            req = qc_request(
                self.template,
                Image.fromarray(before),
                Image.fromarray(after),
                instruction,
                self.sampling(s.key),
            )
            asks.append((i, req))
        results = ask_validated(self.backend, [r for _, r in asks], QCAnswer, self.params.max_attempts)
        p = self.params
        for (i, _), res in zip(asks, results, strict=True):
            s = batch[i]
            if not res.ok:
                out[i] = self.failed(s, res)
                continue
            acc, seam = res.value.region_edit_accuracy, res.value.seamless_quality
            s = self.answered(
                s,
                res,
                {
                    "scores": s.scores.model_copy(
                        update={"region_edit_accuracy": acc, "seamless_quality": seam}
                    )
                },
            )
            if acc < p.min_region_edit_accuracy or seam < p.min_seamless_quality:
                detail = (
                    f"RegionEditAccuracy {format_score(acc)}, SeamlessQuality {format_score(seam)}; need "
                    f"{format_score(p.min_region_edit_accuracy)}, {format_score(p.min_seamless_quality)}"
                )
                s = s.reject(self.name, "qc_below_threshold", detail, raw=res.raw)
            out[i] = s
        return out
