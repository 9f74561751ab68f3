"""Training data: sources named on the command line, mixed by weight, with an exact resumable position.

``--data`` takes our shards (a run folder, a ``shards/`` folder or a ``.tar``) and Bagel parquet (a
``parquet_info`` JSON, or a folder of ``*.parquet``), each optionally suffixed ``=WEIGHT`` (default 1).
Every draw first picks a source by weight, then takes that source's next usable example; sources cycle
through their units (tar files, parquet row groups) in an order shuffled per epoch. Bad samples are
skipped and counted by reason. All randomness is keyed (seed, draw number, epoch), so the position —
a few integers per source plus the skip counts — is the whole state: :meth:`DataMixture.state_dict`
and :meth:`DataMixture.load_state_dict` resume exactly.

Distributed runs stripe items by rank: every rank walks the same shuffled units and takes every
``world_size``-th item of the epoch's stream (decoding only its own; the others are passed over unread
where the format allows: tar members are skipped by offset, parquet rows are not decoded). Draw numbers
are global (``local * world_size + rank``) and key the source choice and everything built from a
sample, so with one source and no skipped samples the ``world_size`` ranks together draw exactly the
samples a one-process run draws, step by step. With several sources, or skips, each rank still draws
deterministically and resumably, but not the same split as a one-process run.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from groundedit.imaging import SampleError

from .bagel_parquet import PARQUET_INFO_NAME, BagelParquetSource
from .errors import DataError
from .examples import EditExample
from .shards import ShardSource, shard_files


class Source(Protocol):
    kind: str
    name: str

    def units(self) -> list[str]: ...

    def read(
        self, unit: int, start: int, seed: int, take: Callable[[int], bool] | None = None
    ) -> Iterator[EditExample | SampleError | None]:
        """Items from ``start``; items ``take`` refuses are yielded as None, undecoded."""
        ...


def parse_data_arg(arg: str) -> tuple[Path, float]:
    """``PATH`` or ``PATH=WEIGHT``."""
    path, sep, weight = arg.rpartition("=")
    if not sep or Path(arg).exists():
        return Path(arg), 1.0
    try:
        value = float(weight)
    except ValueError as e:
        raise DataError(f"--data {arg}: weight {weight!r} is not a number") from e
    if value <= 0:
        raise DataError(f"--data {arg}: weight must be positive")
    return Path(path), value


def open_source(path: Path) -> Source:
    """The source at ``path`` (see the module docstring for what is accepted)."""
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".json":
            try:
                return BagelParquetSource.from_path(path)
            except ValueError as e:
                raise DataError(f"--data {e}") from e
        if path.suffix == ".tar":
            return ShardSource.from_path(path)
        raise DataError(f"--data {path}: expected a .tar shard, a parquet_info .json or a folder")
    if shard_files(path):
        return ShardSource.from_path(path)
    if (path / PARQUET_INFO_NAME).is_file() or any(path.glob("*.parquet")):
        try:
            return BagelParquetSource.from_path(path)
        except ValueError as e:
            raise DataError(f"--data {e}") from e
    raise DataError(f"--data {path}: no .tar shards, shards/ folder, parquet_info.json or .parquet files")


_END = object()


@dataclass
class Position:
    """Where a source's stream stands: unit ``unit`` of the epoch's order, item ``item`` within it;
    ``seen`` items of the stream (all epochs, all ranks' together) lie before it."""

    epoch: int = 0
    unit: int = 0
    item: int = 0
    used_this_epoch: int = 0
    seen: int = 0


class _Stream:
    """One source's endless stream of usable examples."""

    def __init__(self, source: Source, seed: int, rank: int, world_size: int) -> None:
        self.source, self.seed, self.rank, self.world_size = source, seed, rank, world_size
        self.n_units = len(source.units())
        if self.n_units == 0:
            raise DataError(f"--data {source.name}: holds no samples")
        self.pos = Position()
        self._items: Iterator | None = None

    def order(self, epoch: int) -> list[int]:
        order = list(range(self.n_units))
        random.Random(f"{self.seed}:order:{self.source.name}:{epoch}").shuffle(order)
        return order

    def next(self, skipped: Counter) -> EditExample:
        while True:
            if self._items is None:
                order = self.order(self.pos.epoch)
                if self.pos.unit >= len(order):
                    if self.pos.used_this_epoch == 0:
                        reasons = ", ".join(f"{r} {n}" for r, n in skipped.most_common()) or "none"
                        raise DataError(f"--data {self.source.name}: no usable sample (skipped: {reasons})")
                    self.pos = Position(epoch=self.pos.epoch + 1, seen=self.pos.seen)
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
                skipped[item.reason] += 1
                continue
            self.pos.used_this_epoch += 1
            return item


class DataMixture:
    """Draws examples from several sources by weight; see the module docstring."""

    def __init__(
        self, sources: list[tuple[Source, float]], seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if not sources:
            raise DataError("no --data given")
        self.streams = [_Stream(s, seed, rank, world_size) for s, _ in sources]
        total = sum(w for _, w in sources)
        self.cumulative = [sum(w for _, w in sources[: i + 1]) / total for i in range(len(sources))]
        self.seed, self.draws, self.skipped = seed, 0, Counter()
        self.rank, self.world_size = rank, world_size

    @classmethod
    def from_args(cls, args: list[str], seed: int = 0, rank: int = 0, world_size: int = 1) -> DataMixture:
        sources = []
        for arg in args:
            path, weight = parse_data_arg(arg)
            sources.append((open_source(path), weight))
        return cls(sources, seed, rank, world_size)

    def check(self) -> None:
        """Fail now (:class:`DataError`) if a source holds no usable sample, without moving the position."""
        for stream in self.streams:
            _Stream(stream.source, stream.seed, stream.rank, stream.world_size).next(Counter())

    def next(self) -> tuple[int, EditExample]:
        """(global draw number, example); the draw number keys the randomness of what is built from it."""
        draw = self.draws * self.world_size + self.rank
        u = random.Random(f"{self.seed}:mix:{draw}").random()
        index = next((i for i, c in enumerate(self.cumulative) if u < c), len(self.cumulative) - 1)
        example = self.streams[index].next(self.skipped)
        self.draws += 1
        return draw, example

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
