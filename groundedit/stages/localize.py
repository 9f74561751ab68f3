"""localize: the VLM proposes an edit pair's region (GVCoT's mining step) — from source, target and
instruction, a box on GoT's [0, 1000) grid and what the edit does there (change, remove, add).

Its agreement with the pixel proposal (the IoU of the two boxes) is recorded as the region's score;
below ``min_box_iou`` the pair is ``region_disagreement`` (the difference and the instruction's
intent do not meet: an edit that changed something else, or more than it should). The region's box
stays the pixel one, which bounds what measurably changed; the VLM's kind tells ``segment`` which
picture to segment. Global edits kept by ``difference`` pass through unasked.
"""

from __future__ import annotations

from pydantic import Field

from groundedit.image.codec import SampleError
from groundedit.image.difference import box_iou
from groundedit.image.pixels import source_image, target_image
from groundedit.records import Sample, format_score
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatParams, ChatStage


class LocalizeParams(ChatParams):
    min_box_iou: float = Field(0.3, ge=0.0, le=1.0, description="VLM box vs pixel box; below: rejected")


def from_grid(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A box on the [0, 1000) grid in pixels (exclusive right/bottom; 999 reaches the edge)."""
    x1, y1, x2, y2 = box

    def px(v: int, n: int, end: bool) -> int:
        return n if end and v >= 999 else min(n, round(v * n / 1000))

    return px(x1, width, False), px(y1, height, False), px(x2, width, True), px(y2, height, True)


class LocalizeStage(ChatStage):
    name = "localize"
    Params = LocalizeParams
    reads = ("key", "source", "pair", "instructions", "target")
    writes = ("pair.region", "target.score")

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import RegionAnswer, ask_validated, region_request

        out: list[Sample | None] = [None] * len(batch)
        asks = []
        for i, s in enumerate(batch):
            if s.pair.global_edit:
                out[i] = s
                continue
            try:
                req = region_request(
                    self.template,
                    source_image(s),
                    target_image(s),
                    s.instructions.original,
                    self.sampling(s.key),
                )
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            asks.append((i, req))
        results = ask_validated(self.backend, [r for _, r in asks], RegionAnswer, self.params.max_attempts)
        for (i, _), res in zip(asks, results, strict=True):
            s = batch[i]
            if not res.ok:
                out[i] = self.failed(s, res)
                continue
            box = from_grid(res.value.box.corners(), s.source.width, s.source.height)
            region = s.pair.region
            iou = round(box_iou(box, region.pixel_box), 4)
            region = region.model_copy(
                update={"vlm_box": box, "box_iou": iou, "edit_kind": res.value.edit_kind}
            )
            target = s.target.model_copy(update={"score": iou})
            s = self.answered(
                s, res, {"pair": s.pair.model_copy(update={"region": region}), "target": target}
            )
            if iou < self.params.min_box_iou:
                detail = f"box IoU {format_score(iou)} with the pixel difference < {format_score(self.params.min_box_iou)}"
                s = s.reject(self.name, "region_disagreement", detail, raw=res.raw)
            out[i] = s
        return out
