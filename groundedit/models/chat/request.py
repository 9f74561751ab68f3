"""What a chat backend is asked: a system and a user turn, images, sampling and an output constraint.

Both backends build their model input from the same :class:`ChatRequest` through
:meth:`ChatRequest.messages`, so a prompt renders the same way under transformers and vLLM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Sampling(BaseModel):
    """Decoding settings for one request. Plain numbers, so records can keep them as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(512, ge=1, description="hard cap on generated tokens")
    temperature: float = Field(0.7, ge=0.0, description="0 means greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    seed: int = Field(0, ge=0, description="sampling seed; retries draw a new one")


class OutputConstraint(BaseModel):
    """What the answer must look like, enforced while decoding: a JSON schema or a regex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    json_schema: dict[str, Any] | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OutputConstraint:
        if (self.json_schema is None) == (self.regex is None):
            raise ValueError("give exactly one of json_schema and regex")
        return self


class ChatRequest(BaseModel):
    """One generation: a system turn, a user turn whose images come before its text, and settings.

    ``prompt_name`` and ``prompt_sha256`` say which prompt template produced the text, so a stage
    can record them next to the answer.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    system: str
    user: str
    images: list[Image.Image] = Field(default_factory=list)
    constraint: OutputConstraint | None = None
    sampling: Sampling = Field(default_factory=Sampling)
    prompt_name: str | None = None
    prompt_sha256: str | None = None

    def with_seed(self, seed: int) -> ChatRequest:
        """The same request sampled with another seed (used for retries)."""
        return self.model_copy(update={"sampling": self.sampling.model_copy(update={"seed": seed})})

    def messages(self, image_part: Callable[[Image.Image], dict[str, Any]]) -> list[dict[str, Any]]:
        """OpenAI-style chat messages; ``image_part`` turns one image into a content part.

        A text-only request gets a plain string as user content: text-only chat templates
        (Qwen3) expect a string, not a list of parts.
        """
        if not self.images:
            user: str | list[dict[str, Any]] = self.user
        else:
            user = [image_part(im) for im in self.images] + [{"type": "text", "text": self.user}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
