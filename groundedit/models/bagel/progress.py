"""How far an edit call has come, reported through a callback: the caller decides how to show it (the
command line draws progress bars), the model code only counts tokens and denoising steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Phases of a reasoning edit (in order), of a plain edit ("thinking" only in think mode), and the event
# that closes each batch of edits.
GROUNDING = "grounding text"
GROUNDED = "grounded image"
DESCRIPTION = "editing description"
EDITED = "edited image"
THINKING = "thinking"
FINISHED = "finished"
UNITS = {GROUNDING: "tokens", DESCRIPTION: "tokens", THINKING: "tokens", GROUNDED: "steps", EDITED: "steps"}


@dataclass(frozen=True)
class EditProgress:
    """One step of one phase of a batch of edits.

    ``done`` of ``total`` tokens written or denoising steps taken in ``phase``. A text phase's ``total``
    is the token cap until its last event, which has ``done == total`` (every edit of the batch ended
    early or the cap was reached). The batch holds edits ``first`` .. ``first + size - 1`` of ``edits``;
    its ``FINISHED`` event (``done == total == size``) comes after its images are decoded.
    """

    phase: str
    done: int
    total: int
    first: int
    size: int
    edits: int

    @property
    def unit(self) -> str:
        return UNITS.get(self.phase, "edits")


ProgressFn = Callable[[EditProgress], None]


class BatchProgress:
    """Emits the events of one batch: ``phase(name, total)`` gives the per-step callback the model loops
    call with the count so far; ``end()`` closes a text phase at the count it reached."""

    def __init__(self, on_progress: ProgressFn | None, first: int, size: int, edits: int) -> None:
        self.on_progress, self.first, self.size, self.edits = on_progress, first, size, edits
        self.last = EditProgress("", 0, 0, first, size, edits)

    def emit(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.last = EditProgress(phase, done, total, self.first, self.size, self.edits)
            self.on_progress(self.last)

    def phase(self, name: str, total: int) -> Callable[[int], None] | None:
        if self.on_progress is None:
            return None
        self.emit(name, 0, total)
        return lambda done: self.emit(name, done, total)

    def end(self) -> None:
        """Close the current phase where it stopped (a text phase that ended before its cap)."""
        if self.last.done != self.last.total:
            self.emit(self.last.phase, self.last.done, self.last.done)

    def finished(self) -> None:
        self.emit(FINISHED, self.size, self.size)
