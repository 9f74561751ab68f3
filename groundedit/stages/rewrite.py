"""rewrite: a language model paraphrases the instruction (same target, same edit type); both
versions are kept."""

from __future__ import annotations

from pydantic import Field

from groundedit.records import Sample
from groundedit.stages.base import UnitIO
from groundedit.stages.chat_stage import ChatParams, ChatStage


class RewriteParams(ChatParams):
    max_chars: int = Field(300, ge=8, description="longest paraphrase")


class RewriteStage(ChatStage):
    name = "rewrite"
    Params = RewriteParams
    model_role = "llm"
    reads = ("key", "instructions")
    writes = ("instructions.rewritten",)

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        from groundedit.models.chat import RewriteAnswer, ask_validated, rewrite_request

        reqs = [
            rewrite_request(
                self.template, s.instructions.original, self.sampling(s.key), self.params.max_chars
            )
            for s in batch
        ]
        results = ask_validated(self.backend, reqs, RewriteAnswer, self.params.max_attempts)
        out = []
        for s, res in zip(batch, results, strict=True):
            if not res.ok:
                out.append(self.failed(s, res))
                continue
            rewritten = s.instructions.model_copy(update={"rewritten": res.value.instruction})
            out.append(self.answered(s, res, {"instructions": rewritten}))
        return out
