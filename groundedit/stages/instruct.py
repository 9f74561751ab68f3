"""instruct: the VLM writes an edit instruction and its 4-step chain of thought for the target.

The edit type is drawn per sample from a seeded distribution (depends only on seed and key); the VLM
sees the photo with the target's red box and must refer to the target by appearance and position,
never by the box. Answers are constrained to the paper's JSON keys and validated; a CoT that
mentions the marking is rejected.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image
from pydantic import Field

from groundedit.image.codec import SampleError
from groundedit.image.overlay import draw_box
from groundedit.image.pixels import source_image
from groundedit.records import EDIT_TYPES, CoT, EditType, Instructions, Sample
from groundedit.seeding import draw_seed
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatParams, ChatStage

# GroundEdit-45K's type counts (paper Fig. 2), folded into our six types.
PAPER_EDIT_TYPE_WEIGHTS: dict[str, float] = {
    "color change": 12973,
    "remove": 18131,
    "replace": 7558,
    "add": 3844,
    "appearance": 1095 + 775,  # material + appearance
    "others": 417 + 82,  # action + text
}


class InstructParams(ChatParams):
    edit_type_weights: dict[EditType, float] = Field(
        default_factory=lambda: dict(PAPER_EDIT_TYPE_WEIGHTS), description="relative frequency of each type"
    )
    max_chars: int = Field(600, ge=8, description="longest instruction / reasoning step")


def draw_edit_type(seed: int, key: str, weights: dict[str, float]) -> str:
    types = [t for t in EDIT_TYPES if weights.get(t, 0) > 0]
    rng = random.Random(draw_seed(seed, f"edit_type:{key}"))
    return rng.choices(types, weights=[weights[t] for t in types])[0]


class InstructStage(ChatStage):
    name = "instruct"
    Params = InstructParams
    reads = ("key", "source", "target")
    writes = ("edit_type", "instructions", "cot")

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import InstructionAnswer, ask_validated, instruct_request

        out: list[Sample | None] = [None] * len(batch)
        asks, types = [], []
        for i, s in enumerate(batch):
            try:
                boxed = draw_box(np.asarray(source_image(s)), s.target.box_xyxy)
            except SampleError as e:
                out[i] = s.reject(self.name, e.reason, e.detail)
                continue
            edit_type = draw_edit_type(self.config.seed, s.key, self.params.edit_type_weights)
            req = instruct_request(
                self.template, Image.fromarray(boxed), edit_type, self.sampling(s.key), self.params.max_chars
            )
            asks.append((i, req))
            types.append(edit_type)
        contexts = [{"edit_type": t} for t in types]
        results = ask_validated(
            self.backend, [r for _, r in asks], InstructionAnswer, self.params.max_attempts, contexts
        )
        for (i, _), res in zip(asks, results, strict=True):
            s = batch[i]
            if not res.ok:
                out[i] = self.failed(s, res)
                continue
            ans = res.value
            update = {
                "edit_type": ans.editing_type,
                "instructions": Instructions(original=ans.editing_instruction),
                "cot": CoT.model_validate(ans.cot.model_dump(by_alias=True)),
            }
            out[i] = self.answered(s, res, update)
        return out
