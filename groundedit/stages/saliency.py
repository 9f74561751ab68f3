"""saliency: drop targets that are too easy to find or badly segmented.

The VLM sees the photo with the target under a red mask (50% opacity) and answers 1 (keep) or 0.
The verdict is recorded in ``scores.saliency_keep``; with ``drop_salient`` off (the tiny profile,
whose random VLM answers at random) a 0 is recorded and exported, and the sample is kept.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import Field

from groundedit.image.codec import SampleError
from groundedit.image.overlay import draw_mask
from groundedit.image.pixels import source_image, target_mask
from groundedit.records import Sample
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatParams, ChatStage


class SaliencyParams(ChatParams):
    drop_salient: bool = Field(
        True, description="drop targets the VLM answers 0 for; false records the verdict and keeps them"
    )


class SaliencyStage(ChatStage):
    name = "saliency"
    Params = SaliencyParams
    reads = ("key", "source", "target")
    writes = ("scores.saliency_keep",)

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import SaliencyAnswer, ask_validated, saliency_request

        out: list[Sample | None] = [None] * len(batch)
        asks: list[tuple[int, object]] = []
        for i, s in enumerate(batch):
            try:
                rgb = np.asarray(source_image(s))
                masked = draw_mask(rgb, target_mask(s), s.target.box_xyxy)
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            asks.append((i, saliency_request(self.template, Image.fromarray(masked), self.sampling(s.key))))
        results = ask_validated(self.backend, [r for _, r in asks], SaliencyAnswer, self.params.max_attempts)
        for (i, _), res in zip(asks, results, strict=True):
            s = batch[i]
            if not res.ok:
                out[i] = self.failed(s, res)
                continue
            keep = res.value.keep
            s = self.answered(s, res, {"scores": s.scores.model_copy(update={"saliency_keep": int(keep)})})
            drop = not keep and self.params.drop_salient
            out[i] = (
                s.reject(self.name, "salient_or_poorly_masked", "the VLM answered 0", raw=res.raw)
                if drop
                else s
            )
        return out
