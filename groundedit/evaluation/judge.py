"""The VLM judge of ``groundedit eval``: the editing score ES (1-5) through the chat backends.

The judge sees the photo before and after the edit, each with the target's box drawn in red, and
the instruction (``prompts/judge.md``); decoding is constrained to ``{"EditScore": n}``. Replies go
through the same validation and bounded retries as the pipeline's VLM stages (``ask_validated``); a
reply that never validates leaves the item **unscored**, with the reason and the raw text kept —
never a guessed score. Model, backend and sampling come from ``stages/judge.yaml`` (a spec, not a
pipeline stage), so ``--profile tiny`` judges with the tiny Qwen2.5-VL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from groundedit.image.overlay import draw_box
from groundedit.seeding import sampling_seed
from groundedit.specs import StageSpec, load_spec, prompts_dir
from groundedit.stages.chat_stage import ChatParams


class JudgeError(RuntimeError):
    """The judge cannot run (its model is missing); the message lists how to get it."""


@dataclass(frozen=True)
class Verdict:
    score: int | None  # None: unscored
    reason: str | None = None  # why unscored
    raw: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class JudgeInput:
    id: str
    source: np.ndarray
    edited: np.ndarray
    box: tuple[int, int, int, int]
    instruction: str


class EditJudge:
    """Scores edits with the VLM named by the judge spec (``load(profile)``) or a given backend."""

    def __init__(self, spec: StageSpec, seed: int = 0, backend=None):
        self.spec = spec
        self.params = ChatParams.model_validate(spec.params)
        self.seed = seed
        self.backend = backend
        self.template = None

    @classmethod
    def load(cls, profile: str, seed: int = 0) -> EditJudge:
        return cls(load_spec("judge", profile), seed)

    def setup(self) -> None:
        from groundedit.models.chat import load_prompt, make_backend
        from groundedit.models.hub import missing_models, quiet_loading, resolve

        if self.backend is None:
            ref = self.spec.models["vlm"]
            missing = missing_models([("judge", "vlm", ref)])
            if missing:
                raise JudgeError(
                    f"judge model missing: {'; '.join(missing)} (or use --no-judge, or --profile tiny)"
                )
            quiet_loading()
            self.backend = make_backend(self.spec.backend, model=resolve(ref), **self.params.backend_options)
        self.backend.setup()
        self.template = load_prompt(self.spec.prompt, directory=prompts_dir())

    def judge(self, items: list[JudgeInput]) -> list[Verdict]:
        from groundedit.models.chat import EditScoreAnswer, Sampling, ask_validated, judge_request

        if not items:
            return []
        p = self.params
        requests = []
        for it in items:
            sampling = Sampling(
                max_new_tokens=p.max_new_tokens,
                temperature=p.temperature,
                top_p=p.top_p,
                seed=sampling_seed(self.seed, f"judge:{it.id}"),
            )
            before = Image.fromarray(draw_box(it.source, it.box))
            after = Image.fromarray(draw_box(it.edited, it.box))
            requests.append(judge_request(self.template, before, after, it.instruction, sampling))
        out = []
        for res in ask_validated(self.backend, requests, EditScoreAnswer, p.max_attempts):
            if res.ok:
                out.append(Verdict(res.value.edit_score, raw=res.raw, attempts=res.attempts))
            else:
                reason = f"{res.reason} after {res.attempts} attempts: {res.detail}"
                out.append(Verdict(None, reason=reason, raw=res.raw, attempts=res.attempts))
        return out

    def teardown(self) -> None:
        if self.backend is not None and hasattr(self.backend, "teardown"):
            self.backend.teardown()
