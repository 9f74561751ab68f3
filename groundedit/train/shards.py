"""Our exported WebDataset shards as a training source: units are tar files, items are sample keys.

Members are found by scanning the tar's headers (:func:`groundedit.formats.tar.scan_tar`) and read by offset,
so resuming in the middle of a shard seeks straight to the sample. A sample's members are grouped by
key (the member name up to its first dot) in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from groundedit.formats.runfolder import RunFolder
from groundedit.formats.tar import scan_tar
from groundedit.image.codec import SampleError

from .examples import SHARD_MEMBERS, EditExample, example_from_members


def shard_files(path: Path) -> list[Path]:
    """Tar shards at ``path``: the file itself, ``path/*.tar``, or a run folder's ``shards/*.tar``."""
    if path.is_file():
        return [path]
    if RunFolder(path).shards.is_dir():
        path = RunFolder(path).shards
    return sorted(path.glob("*.tar"))


def _group(tar: Path) -> list[tuple[str, dict[str, tuple[int, int]], list[str]]]:
    """(key, {member: (offset, size)}, problems) per sample, in order of first appearance."""
    samples: dict[str, tuple[dict[str, tuple[int, int]], list[str]]] = {}
    for member, unsafe in scan_tar(tar):
        base = member.name.rsplit("/", 1)[-1]
        key, _, ext = base.partition(".")
        members, problems = samples.setdefault(key, ({}, []))
        if unsafe:
            problems.append(f"unsafe member {member.name}: {unsafe}")
        elif ext in SHARD_MEMBERS:
            members[ext] = (member.offset, member.size)
    return [(k, m, p) for k, (m, p) in samples.items()]


class ShardSource:
    """The samples of one or more WebDataset tar shards written by ``groundedit run``."""

    kind = "groundedit"

    def __init__(self, name: str, files: list[Path]) -> None:
        self.name, self.files = name, files

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.suffix == ".tar" if path.is_file() else bool(shard_files(path))

    @classmethod
    def from_path(cls, path: Path) -> ShardSource:
        return cls(str(path), shard_files(path))

    def units(self) -> list[str]:
        return [str(f) for f in self.files]

    def read(
        self, unit: int, start: int, seed: int, take: Callable[[int], bool] | None = None
    ) -> Iterator[EditExample | SampleError | None]:
        """Items of one shard from sample ``start`` on (each an example or the error that skips it; None
        for an item ``take`` refuses, which is not read)."""
        tar = self.files[unit]
        try:
            samples = _group(tar)
        except Exception as e:
            if start == 0 and take is not None and not take(0):
                yield None  # the error is the unit's one item, and another rank's to count
            elif start == 0:  # counted once, not again when resuming inside this unit
                yield SampleError("shard_unreadable", f"{tar}: {type(e).__name__}: {e}")
            return
        with open(tar, "rb") as f:
            for i, (key, members, problems) in enumerate(samples[start:], start):
                if take is not None and not take(i):
                    yield None
                    continue
                if problems:
                    yield SampleError("unsafe_member", "; ".join(problems))
                    continue
                data = {}
                for ext, (offset, size) in members.items():
                    f.seek(offset)
                    data[ext] = f.read(size)
                try:
                    yield example_from_members(key, data)
                except SampleError as e:
                    yield e
