"""The chat backend protocol: requests with images and an optional constraint in, text out.

A backend is cheap to construct and pickles (stages ship it to Ray workers); it loads its model in
:meth:`ChatBackend.setup`, where its heavy imports live. Backends share request rendering
(``ChatRequest.messages``), image preparation (``images.prepare_image``) and constraints; the
answers they return are parsed and validated outside them (``asking.ask_validated``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from groundedit.models.chat.request import ChatRequest


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that turns chat requests into raw reply texts, one per request, in order."""

    model_id: str

    def setup(self) -> None:
        """Load the model; the only place heavy imports happen."""

    def generate(self, requests: list[ChatRequest]) -> list[str]:
        """Raw reply text for each request (decoded, special tokens removed)."""
        ...

    def teardown(self) -> None:
        """Release the model and its device memory."""
