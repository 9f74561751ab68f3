"""reason: the VLM writes the reasoning of a given edit (GoT + InterCoG) — from source and target,
both with the mined region's red box, and the instruction: the edit type, the edited object's name,
the same 4-step CoT the SA-1B recipe exports, and a GoT-style chain (scene → target with its box
``(x1,y1),(x2,y2)`` on the [0, 1000) grid → operation → result), stored as the pair's ``got``.

The box written in the chain must be the mined region's: decoding is constrained to write it in the
target step, and the answer is validated (the target step gives it, no other box appears anywhere);
an answer that fails is retried with a new seed, then rejected.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from groundedit.image.codec import SampleError
from groundedit.image.overlay import draw_box
from groundedit.image.pixels import source_image, target_image
from groundedit.records import CoT, GoTChain, Sample
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatStage
from groundedit.stages.export import box_1000
from groundedit.stages.instruct import InstructParams


class ReasonStage(ChatStage):
    name = "reason"
    Params = InstructParams  # the same sampling and length bounds as instruct (edit type weights unused)
    reads = ("key", "source", "pair", "target", "instructions")
    writes = ("edit_type", "cot", "target.label", "pair.got")

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import ReasoningAnswer, ask_validated, reasoning_request

        out: list[Sample | None] = [None] * len(batch)
        asks, boxes = [], []
        for i, s in enumerate(batch):
            box = s.target.box_xyxy
            grid = box_1000(tuple(int(v) for v in box), s.source.width, s.source.height)
            try:
                before = draw_box(np.asarray(source_image(s)), box)
                after = draw_box(np.asarray(target_image(s)), box)
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            req = reasoning_request(
                self.template,
                Image.fromarray(before),
                Image.fromarray(after),
                s.instructions.original,
                grid,
                self.sampling(s.key),
                self.params.max_chars,
            )
            asks.append((i, req))
            boxes.append(grid)
        contexts = [{"box_1000": b} for b in boxes]
        results = ask_validated(
            self.backend, [r for _, r in asks], ReasoningAnswer, self.params.max_attempts, contexts
        )
        for (i, _), res, grid in zip(asks, results, boxes, strict=True):
            s = batch[i]
            if not res.ok:
                out[i] = self.failed(s, res)
                continue
            ans = res.value
            steps = ans.got
            got = GoTChain(
                scene=steps.scene,
                target=steps.target,
                box_1000=grid,
                operation=steps.operation,
                result=steps.result,
                text=" ".join((steps.scene, steps.target, steps.operation, steps.result)),
            )
            update = {
                "edit_type": ans.editing_type,
                "cot": CoT.model_validate(ans.cot.model_dump(by_alias=True)),
                "target": s.target.model_copy(update={"label": ans.target_object}),
                "pair": s.pair.model_copy(update={"got": got}),
            }
            out[i] = self.answered(s, res, update)
        return out
