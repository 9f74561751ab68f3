"""Training data: sources named on the command line, mixed by weight, with an exact resumable position.

``--data`` takes ``[KIND:]PATH[=WEIGHT]``. The kinds (:data:`KINDS`, official Bagel's names where it has
one) and what each reads:

- ``groundedit`` — our shards: a run folder, a ``shards/`` folder or a ``.tar``;
- ``unified_edit`` — Bagel's edit parquet: a ``parquet_info`` JSON, or a folder (or file) of ``*.parquet``
  with ``image_list`` / ``instruction_list``;
- ``t2i_pretrain`` — Bagel's text-to-image parquet: a folder (or file) of ``*.parquet`` with ``image`` /
  ``captions``;
- ``vlm_sft`` — Bagel's understanding data: a ``.jsonl`` (images in ``images/`` beside it), or a folder of them.

The kind is recognised from the path (``KIND:`` forces one). A source's weight is ``WEIGHT`` when given,
else its kind's weight from the spec's ``mixture`` (shared equally by that kind's sources; 1 when the
kind is not listed). Every draw first picks a source by weight, then takes that source's next usable
example; sources cycle through their units (tar files, parquet row groups, JSONL byte ranges) in an
order shuffled per epoch. Bad samples are skipped and counted by reason, and so are samples the caller's
``accept`` refuses (the trainer refuses samples over its token budget, ``too_long``). A source that skips
``max_skips_in_a_row`` samples in a row, or a whole epoch, stops the run with one :class:`DataError`
naming the last reason and its detail — it never loops silently. All randomness is keyed (seed, draw
number, epoch), so the position — a few integers per source plus the skip counts — is the whole state:
:meth:`DataMixture.state_dict` and :meth:`DataMixture.load_state_dict` resume exactly.

Distributed runs stripe items by rank: every rank walks the same shuffled units and takes every
``world_size``-th item of the epoch's stream (decoding only its own; the others are passed over unread
where the format allows: tar members are skipped by offset, parquet rows and JSONL lines are not
decoded). Draw numbers are global (``local * world_size + rank``) and key the source choice and
everything built from a sample, so with one source and no skipped samples the ``world_size`` ranks
together draw exactly the samples a one-process run draws, step by step. With several sources, or skips,
each rank still draws deterministically and resumably, but not the same split as a one-process run.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from groundedit.image.codec import SampleError

from .bagel_parquet import BagelParquetSource
from .errors import DataError
from .examples import Example
from .shards import ShardSource
from .t2i_parquet import T2IParquetSource
from .vlm_jsonl import VlmJsonlSource


class Source(Protocol):
    kind: str
    name: str

    @classmethod
    def claims(cls, path: Path) -> bool:
        """Whether ``path`` holds this kind of data (checked in :data:`KINDS` order)."""
        ...

    @classmethod
    def from_path(cls, path: Path) -> Source: ...

    def units(self) -> list[str]: ...

    def read(
        self, unit: int, start: int, seed: str, take: Callable[[int], bool] | None = None
    ) -> Iterator[Example | SampleError | None]:
        """Items from ``start``; items ``take`` refuses are yielded as None, undecoded."""
        ...


# The kinds --data reads, in the order a path is tried against them.
KINDS: dict[str, type[Source]] = {
    cls.kind: cls for cls in (ShardSource, BagelParquetSource, T2IParquetSource, VlmJsonlSource)
}


@dataclass(frozen=True)
class DataArg:
    """One ``--data`` value: ``[KIND:]PATH[=WEIGHT]``."""

    path: Path
    weight: float | None = None
    kind: str | None = None


def parse_data_arg(arg: str) -> DataArg:
    """``[KIND:]PATH[=WEIGHT]`` (an existing path is taken whole, whatever it contains)."""
    if Path(arg).exists():
        return DataArg(Path(arg))
    kind = None
    prefix, colon, rest = arg.partition(":")
    if colon and prefix in KINDS:
        kind, arg = prefix, rest
    path, sep, weight = arg.rpartition("=")
    if not sep or Path(arg).exists():
        return DataArg(Path(arg), None, kind)
    try:
        value = float(weight)
    except ValueError as e:
        raise DataError(f"--data {arg}: weight {weight!r} is not a number") from e
    if value <= 0:
        raise DataError(f"--data {arg}: weight must be positive")
    return DataArg(Path(path), value, kind)


def open_source(path: Path, kind: str | None = None) -> Source:
    """The source at ``path``: of ``kind``, or of the first kind that recognises it."""
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    cls = KINDS[kind] if kind else next((c for c in KINDS.values() if c.claims(path)), None)
    if cls is None:
        raise DataError(
            f"--data {path}: no training data here (no .tar shards, shards/ folder, parquet_info.json, "
            "edit or t2i .parquet, or .jsonl)"
        )
    try:
        return cls.from_path(path)
    except (ValueError, OSError) as e:
        raise DataError(f"--data {path}: {e}") from e


_END = object()


@dataclass
class Position:
    """Where a source's stream stands: unit ``unit`` of the epoch's order, item ``item`` within it;
    ``seen`` items of the stream (all epochs, all ranks' together) lie before it; the last
    ``skipped_in_a_row`` of this rank's items were skipped."""

    epoch: int = 0
    unit: int = 0
    item: int = 0
    used_this_epoch: int = 0
    seen: int = 0
    skipped_in_a_row: int = 0


@dataclass
class _Skips:
    """What a stream skipped this epoch, for the error that stops a source that yields nothing."""

    reasons: Counter = field(default_factory=Counter)
    last: str = ""

    def describe(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.reasons.most_common()) or "none"
        return f"skipped: {reasons}" + (f"; the last: {self.last}" if self.last else "")


class _Stream:
    """One source's endless stream of usable examples."""

    def __init__(
        self, source: Source, seed: int, rank: int, world_size: int, max_skips_in_a_row: int
    ) -> None:
        self.source, self.seed, self.rank, self.world_size = source, seed, rank, world_size
        self.max_skips_in_a_row = max_skips_in_a_row
        self.n_units = len(source.units())
        if self.n_units == 0:
            raise DataError(f"--data {source.name}: holds no samples")
        self.pos = Position()
        self._items: Iterator | None = None
        self._skips = _Skips()

    def order(self, epoch: int) -> list[int]:
        order = list(range(self.n_units))
        random.Random(f"{self.seed}:order:{self.source.name}:{epoch}").shuffle(order)
        return order

    def _skip(self, error: SampleError, skipped: Counter) -> None:
        skipped[error.reason] += 1
        self._skips.reasons[error.reason] += 1
        self._skips.last = f"{error.reason}" + (f" ({error.detail})" if error.detail else "")
        self.pos.skipped_in_a_row += 1
        if self.pos.skipped_in_a_row >= self.max_skips_in_a_row:
            raise DataError(
                f"--data {self.source.name}: {self.pos.skipped_in_a_row} samples in a row skipped "
                f"({self._skips.describe()})"
            )

    def next(self, skipped: Counter, accept: Callable[[Example], object] | None = None):
        """The next usable example (or what ``accept`` makes of it; ``accept`` raising
        :class:`SampleError` skips the example as a bad one)."""
        while True:
            if self._items is None:
                order = self.order(self.pos.epoch)
                if self.pos.unit >= len(order):
                    if self.pos.used_this_epoch == 0:
                        raise DataError(
                            f"--data {self.source.name}: no usable sample in a whole pass ({self._skips.describe()})"
                        )
                    self.pos = Position(epoch=self.pos.epoch + 1, seen=self.pos.seen)
                    self._skips = _Skips()
                    continue
                unit_seed = f"{self.seed}:{self.pos.epoch}"
                take = None
                if self.world_size > 1:
                    first = self.pos.seen - self.pos.item  # stream index of the unit's item 0
                    take = lambda i, first=first: (first + i) % self.world_size == self.rank  # noqa: E731
                self._items = iter(self.source.read(order[self.pos.unit], self.pos.item, unit_seed, take))
            item = next(self._items, _END)
            if item is _END:
                self._items = None
                self.pos.unit, self.pos.item = self.pos.unit + 1, 0
                continue
            self.pos.item += 1
            self.pos.seen += 1
            if item is None:  # another rank's
                continue
            if isinstance(item, SampleError):
                self._skip(item, skipped)
                continue
            item.source = self.source.name
            if accept is not None:
                try:
                    item = accept(item)
                except SampleError as e:
                    self._skip(e, skipped)
                    continue
            self.pos.used_this_epoch += 1
            self.pos.skipped_in_a_row = 0
            return item


def source_weights(sources: list[tuple[Source, DataArg]], kind_weights: dict[str, float]) -> list[float]:
    """Each source's weight: its own ``=WEIGHT``, else its kind's weight shared by the kind's unweighted
    sources (1 for a kind the mixture does not list)."""
    unweighted = Counter(s.kind for s, a in sources if a.weight is None)
    return [
        a.weight if a.weight is not None else kind_weights.get(s.kind, 1.0) / unweighted[s.kind]
        for s, a in sources
    ]


class DataMixture:
    """Draws examples from several sources by weight; see the module docstring."""

    def __init__(
        self,
        sources: list[tuple[Source, float]],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_skips_in_a_row: int = 1000,
    ) -> None:
        if not sources:
            raise DataError("no --data given")
        self.streams = [_Stream(s, seed, rank, world_size, max_skips_in_a_row) for s, _ in sources]
        self.weights = [w for _, w in sources]
        total = sum(self.weights)
        self.cumulative = [sum(self.weights[: i + 1]) / total for i in range(len(sources))]
        self.seed, self.draws, self.skipped = seed, 0, Counter()
        self.rank, self.world_size = rank, world_size

    @classmethod
    def from_args(
        cls,
        args: list[str],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        kind_weights: dict[str, float] | None = None,
        max_skips_in_a_row: int = 1000,
    ) -> DataMixture:
        parsed = [parse_data_arg(arg) for arg in args]
        sources = [(open_source(a.path, a.kind), a) for a in parsed]
        weights = source_weights(sources, kind_weights or {})
        return cls(
            [(s, w) for (s, _), w in zip(sources, weights, strict=True)],
            seed,
            rank,
            world_size,
            max_skips_in_a_row,
        )

    def check(self) -> None:
        """Fail now (:class:`DataError`) if a source holds no usable sample, without moving the position."""
        for s in self.streams:
            _Stream(s.source, s.seed, s.rank, s.world_size, s.max_skips_in_a_row).next(Counter())

    def next(self, accept: Callable[[int, Example], object] | None = None) -> tuple[int, object]:
        """(global draw number, example), or ``accept(draw, example)`` for the first example of the drawn
        source that ``accept`` takes (it raises :class:`SampleError` to skip one, counted by reason). The
        draw number keys the randomness of what is built from the sample."""
        draw = self.draws * self.world_size + self.rank
        u = random.Random(f"{self.seed}:mix:{draw}").random()
        index = next((i for i, c in enumerate(self.cumulative) if u < c), len(self.cumulative) - 1)
        take = None if accept is None else (lambda example: accept(draw, example))
        item = self.streams[index].next(self.skipped, take)
        self.draws += 1
        return draw, item

    def state_dict(self) -> dict:
        return {
            "draws": self.draws,
            "skipped": dict(self.skipped),
            "positions": [asdict(s.pos) for s in self.streams],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["positions"]) != len(self.streams):
            raise DataError(
                f"the checkpoint was trained on {len(state['positions'])} --data sources, not {len(self.streams)}"
            )
        self.draws, self.skipped = state["draws"], Counter(state["skipped"])
        for stream, pos in zip(self.streams, state["positions"], strict=True):
            stream.pos, stream._items = Position(**pos), None
