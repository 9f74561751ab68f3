"""Backend names -> classes: stage specs name a backend (``transformers`` or ``vllm``), not a class."""

from __future__ import annotations

from typing import Any

from groundedit.models.chat.backend import ChatBackend
from groundedit.models.chat.transformers_backend import TransformersChatBackend
from groundedit.models.chat.vllm_backend import VLLMChatBackend

BACKENDS: dict[str, type] = {
    "transformers": TransformersChatBackend,
    "vllm": VLLMChatBackend,
}


def make_backend(kind: str, **kwargs: Any) -> ChatBackend:
    """Construct (not load) the backend registered as ``kind``; ``kwargs`` go to its constructor."""
    try:
        cls = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown chat backend {kind!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return cls(**kwargs)
