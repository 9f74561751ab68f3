"""Ask a backend, validate every reply, retry the invalid ones with new seeds, then give up cleanly.

:func:`ask_validated` is the one loop the VLM stages call: it sends a batch, parses each reply with
the answer class, and resends only the failed requests, each with a fresh seed, up to
``max_attempts`` times. A request that never validates comes back as a :class:`Failure` that
carries a reason code and the last raw reply, so the stage can reject the sample with both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationError

from groundedit.models.chat.backend import ChatBackend
from groundedit.models.chat.request import ChatRequest

A = TypeVar("A", bound=BaseModel)


class AnswerModel(Protocol):
    """What :func:`ask_validated` needs from an answer class (see ``answers.py``)."""

    @classmethod
    def parse(cls, raw: str, context: dict[str, Any] | None = None) -> Self: ...


class FailureReason(StrEnum):
    """Why a reply was not accepted; stages use these as rejection reasons."""

    INVALID_JSON = "invalid_json"
    WRONG_KEYS = "wrong_keys"
    OUT_OF_RANGE = "out_of_range"
    INVALID_VALUE = "invalid_value"
    MENTIONS_MARKING = "mentions_marking"
    EDIT_TYPE_MISMATCH = "edit_type_mismatch"
    EMPTY = "empty"
    NOT_ONE_LINE = "not_one_line"


# pydantic error type -> reason. Listed in precedence order: when a reply has several errors the
# first matching entry names it (a reply that is not JSON at all is "invalid_json", not "missing").
_REASONS: dict[str, FailureReason] = {
    "json_invalid": FailureReason.INVALID_JSON,
    "json_type": FailureReason.INVALID_JSON,
    "model_type": FailureReason.WRONG_KEYS,
    "model_attributes_type": FailureReason.WRONG_KEYS,
    "missing": FailureReason.WRONG_KEYS,
    "extra_forbidden": FailureReason.WRONG_KEYS,
    "empty": FailureReason.EMPTY,
    "string_too_short": FailureReason.EMPTY,
    "not_one_line": FailureReason.NOT_ONE_LINE,
    "greater_than": FailureReason.OUT_OF_RANGE,
    "greater_than_equal": FailureReason.OUT_OF_RANGE,
    "less_than": FailureReason.OUT_OF_RANGE,
    "less_than_equal": FailureReason.OUT_OF_RANGE,
    "edit_type_mismatch": FailureReason.EDIT_TYPE_MISMATCH,
    "mentions_marking": FailureReason.MENTIONS_MARKING,
}


def failure_reason(error: ValidationError) -> FailureReason:
    """The reason code for a validation error (``invalid_value`` when nothing more specific fits)."""
    types = {e["type"] for e in error.errors()}
    return next((reason for t, reason in _REASONS.items() if t in types), FailureReason.INVALID_VALUE)


def attempt_seed(base_seed: int, attempt: int) -> int:
    """The sampling seed of retry ``attempt`` (0 = first try keeps ``base_seed``).

    Derived by hashing, so retries of neighbouring samples (consecutive base seeds) never share a
    seed, and a rerun draws the very same seeds.
    """
    if attempt == 0:
        return base_seed
    digest = hashlib.sha256(f"{base_seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    raw: str
    attempts: int
    seeds: list[int]
    model_id: str
    prompt_name: str | None
    prompt_sha256: str | None
    sampling: dict[str, Any]


class Answer(_Outcome, Generic[A]):
    """A validated reply: ``value`` is the answer model; ``sampling`` holds the seed that worked."""

    ok: ClassVar[bool] = True
    value: SerializeAsAny[A]


class Failure(_Outcome):
    """A request that never validated: the reason and message of its last try, and its raw reply."""

    ok: ClassVar[bool] = False
    reason: FailureReason
    detail: str


def ask_validated(
    backend: ChatBackend,
    requests: Sequence[ChatRequest],
    answer_model: type[AnswerModel],
    max_attempts: int = 3,
    contexts: Sequence[dict[str, Any] | None] | None = None,
) -> list[Answer | Failure]:
    """Generate, validate and retry; one :class:`Answer` or :class:`Failure` per request, in order.

    ``contexts`` (one per request) is passed to validation, e.g. ``{"edit_type": "remove"}``.
    Retries differ only by seed, so they help only when sampling (``temperature > 0``): a greedy
    request that fails once fails every time. Backend errors are not caught: they are
    infrastructure failures, not bad answers.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    if contexts is not None and len(contexts) != len(requests):
        raise ValueError(f"{len(contexts)} contexts for {len(requests)} requests")
    results: list[Answer | Failure | None] = [None] * len(requests)
    last: dict[int, tuple[str, ValidationError]] = {}
    seeds: list[list[int]] = [[] for _ in requests]
    pending = list(range(len(requests)))
    for attempt in range(max_attempts):
        if not pending:
            break
        batch = [requests[i].with_seed(attempt_seed(requests[i].sampling.seed, attempt)) for i in pending]
        replies = backend.generate(batch)
        if len(replies) != len(batch):
            raise RuntimeError(f"backend {backend.model_id} returned {len(replies)} replies for {len(batch)}")
        still: list[int] = []
        for i, request, raw in zip(pending, batch, replies, strict=True):
            seeds[i].append(request.sampling.seed)
            try:
                value = answer_model.parse(raw, contexts[i] if contexts is not None else None)
            except ValidationError as error:
                last[i] = (raw, error)
                still.append(i)
                continue
            results[i] = Answer(value=value, **_common(backend, request, raw, seeds[i]))
        pending = still
    for i in pending:
        raw, error = last[i]
        request = requests[i].with_seed(seeds[i][-1])
        results[i] = Failure(
            reason=failure_reason(error), detail=_short(error), **_common(backend, request, raw, seeds[i])
        )
    return results  # type: ignore[return-value]


def _common(backend: ChatBackend, request: ChatRequest, raw: str, seeds: list[int]) -> dict[str, Any]:
    return {
        "raw": raw,
        "attempts": len(seeds),
        "seeds": list(seeds),
        "model_id": backend.model_id,
        "prompt_name": request.prompt_name,
        "prompt_sha256": request.prompt_sha256,
        "sampling": request.sampling.model_dump(),
    }


def _short(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else first["msg"]
