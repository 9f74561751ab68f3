"""The final output, combined from the sink's per-unit parts in plan order.

Export workers write each unit's samples as a part tar and list every stage's rejected rows for the
unit (:mod:`groundedit.stages.export`). Here the driver walks those commits in plan order (holding
only the units that arrived early) and decides, from their metadata alone, which byte ranges make
each shard and which rejected files make each file of ``rejected.parquet/``. Each output is then
written by :func:`assemble_shard` / :func:`assemble_rejected` on a worker (a Ray task, or inline):
a byte copy of whole sample spans plus the tar's end blocks, or a streamed concatenation of
Parquet files. So no shard byte passes through the driver, the layout depends only on the data,
and each output records an *identity* (a digest of the parts it was cut from): a resumed run
rewrites exactly the outputs whose identity changed and deletes the ones past the new end.

Shards go first to a temp name and are renamed; ``<shard>.stats.json`` is written after the shard
and is its completion record.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from groundedit.engine.tickets import Ticket
from groundedit.faults import crash_point
from groundedit.formats.commits import CommitStore, RejectedPart, UnitCommit
from groundedit.formats.manifest import atomic_write_bytes, digest
from groundedit.formats.runfolder import RunFolder
from groundedit.formats.shards import (
    REJECTED_PATTERN,
    REJECTED_PREFIX,
    SHARD_PATTERN,
    SHARD_PREFIX,
    ShardStats,
    stats_path,
)
from groundedit.formats.storage import REJECTED_SCHEMA

_END = b"\0" * 1024  # a tar ends with two zero blocks
_IDENTITY_KEY = b"groundedit.identity"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ByteRange(_Record):
    file: str
    start: int
    end: int


class ShardJob(_Record):
    index: int
    ranges: list[ByteRange]
    samples: int
    first_key: str
    last_key: str
    edit_types: dict[str, int]
    identity: str

    @property
    def name(self) -> str:
        return SHARD_PATTERN.format(self.index)


class RejectedJob(_Record):
    index: int
    files: list[RejectedPart]
    rows: int
    identity: str

    @property
    def name(self) -> str:
        return REJECTED_PATTERN.format(self.index)


# --- writing one output (on a worker) ------------------------------------------------------------


def assemble_shard(out: str, job: ShardJob) -> ShardStats:
    """Copy the job's sample spans into a new shard, add the end blocks, then write its stats."""
    path = RunFolder(out).shards / job.name
    stats_path(path).unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    sha = hashlib.sha256()
    with open(tmp, "wb") as dst:
        for r in job.ranges:
            with open(Path(out) / r.file, "rb") as src:
                src.seek(r.start)
                left = r.end - r.start
                while left:
                    chunk = src.read(min(left, 1 << 22))
                    if not chunk:
                        raise OSError(f"{r.file} is shorter than its commit says")
                    sha.update(chunk)
                    dst.write(chunk)
                    left -= len(chunk)
        sha.update(_END)
        dst.write(_END)
        dst.flush()
        os.fsync(dst.fileno())
        size = dst.tell()
    os.replace(tmp, path)
    stats = ShardStats(
        shard=job.name,
        samples=job.samples,
        bytes=size,
        sha256=sha.hexdigest(),
        first_key=job.first_key,
        last_key=job.last_key,
        edit_types=job.edit_types,
        identity=job.identity,
        committed_ns=time.time_ns(),
    )
    atomic_write_bytes(stats_path(path), stats.model_dump_json(indent=1).encode())
    crash_point("export:shard-written")
    return stats


def assemble_rejected(out: str, job: RejectedJob) -> int:
    """Concatenate the job's rejected files into one Parquet file (streamed, file by file)."""
    folder = RunFolder(out).rejected
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / job.name
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    schema = REJECTED_SCHEMA.with_metadata({_IDENTITY_KEY: job.identity.encode()})
    rows = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for part in job.files:
            table = pq.read_table(Path(out) / part.file, schema=REJECTED_SCHEMA)
            writer.write_table(table.replace_schema_metadata(schema.metadata))
            rows += table.num_rows
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    crash_point("export:rejected-written")
    return rows


# --- deciding the layout (in the driver) ---------------------------------------------------------


class ShardLayout:
    """Cuts the stream of unit parts into shards of at most ``max_samples`` samples and
    ``max_bytes`` bytes (a sample never splits; an oversized one gets a shard of its own)."""

    def __init__(self, max_samples: int, max_bytes: int):
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.index = 0
        self._reset()

    def _reset(self) -> None:
        self.ranges: list[ByteRange] = []
        self.keys: list[str] = []
        self.types: Counter = Counter()
        self.bytes = len(_END)
        self.ident: list = []

    def add(self, commit: UnitCommit) -> list[ShardJob]:
        closed = []
        for i, s in enumerate(commit.part_samples):
            size = s.end - s.start
            if self.keys and (len(self.keys) >= self.max_samples or self.bytes + size > self.max_bytes):
                closed.append(self._close())
            last = self.ranges[-1] if self.ranges else None
            if last is not None and last.file == commit.artifacts and last.end == s.start:
                last.end = s.end
            else:
                self.ranges.append(ByteRange(file=commit.artifacts, start=s.start, end=s.end))
            self.keys.append(s.key)
            self.types[s.edit_type or "none"] += 1
            self.bytes += size
            self.ident.append((commit.unit, commit.output_fingerprint, i))
        return closed

    def _close(self) -> ShardJob:
        job = ShardJob(
            index=self.index,
            ranges=self.ranges,
            samples=len(self.keys),
            first_key=self.keys[0],
            last_key=self.keys[-1],
            edit_types=dict(sorted(self.types.items())),
            identity=digest(self.ident),
        )
        self.index += 1
        self._reset()
        return job

    def finish(self) -> list[ShardJob]:
        return [self._close()] if self.keys else []


class RejectedLayout:
    """Groups units' rejected files into files of about ``max_rows`` rows, at unit boundaries."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self.index = 0
        self.files: list[RejectedPart] = []
        self.rows = 0
        self.ident: list = []

    def add(self, commit: UnitCommit) -> list[RejectedJob]:
        closed = []
        rows = sum(p.rows for p in commit.rejected_parts)
        if not rows:
            return closed
        if self.files and self.rows + rows > self.max_rows:
            closed.append(self._close())
        self.files.extend(commit.rejected_parts)
        self.rows += rows
        self.ident.append((commit.unit, commit.output_fingerprint))
        return closed

    def _close(self) -> RejectedJob:
        job = RejectedJob(index=self.index, files=self.files, rows=self.rows, identity=digest(self.ident))
        self.index += 1
        self.files, self.rows, self.ident = [], 0, []
        return job

    def finish(self) -> list[RejectedJob]:
        # an empty run still gets one (empty) file, so readers always find the table
        return [self._close()] if self.files or self.index == 0 else []


class CombinedOutput(_Record):
    """What the output holds once combined: shards, samples in them, rows of ``rejected.parquet/``."""

    shards: int
    samples: int
    rejected_rows: int


class OutputCombiner:
    """Takes tickets in any order, combines the sink's parts in plan order. ``call(fn, *args)``
    runs an output writer where the executor runs work (a Ray task, or inline)."""

    def __init__(self, out: Path, sink: str, params, commits: CommitStore, call: Callable):
        self.out, self.sink, self.commits, self.call = Path(out), sink, commits, call
        self.shards = ShardLayout(params.shard_max_samples, params.shard_max_bytes)
        self.rejected = RejectedLayout(params.rejected_part_rows)
        self._early: dict[int, Ticket] = {}
        self._next = 0
        self.samples = self.rejected_rows = self.written = 0
        self.folder = RunFolder(out)
        self.folder.shards.mkdir(parents=True, exist_ok=True)
        legacy = self.folder.rejected
        if legacy.is_file():  # a run folder from before rejected.parquet became a folder
            legacy.unlink()

    def add(self, ticket: Ticket) -> None:
        self._early[ticket.seq] = ticket
        while self._next in self._early:
            self._combine(self._early.pop(self._next))
            self._next += 1

    def _combine(self, ticket: Ticket) -> None:
        outcome = ticket.outcome(self.sink)
        if outcome is None or not outcome.ok:
            return  # blocked or quarantined: nothing of it is combined until it is done
        commit = self.commits.read(self.sink, ticket.unit)
        for job in self.shards.add(commit):
            self._write_shard(job)
        for job in self.rejected.add(commit):
            self._write_rejected(job)

    def _write_shard(self, job: ShardJob) -> None:
        self.samples += job.samples
        shard = self.folder.shards / job.name
        try:
            done = ShardStats.model_validate_json(stats_path(shard).read_bytes())
        except (FileNotFoundError, ValueError):
            done = None
        if done is not None and done.identity == job.identity and shard.is_file():
            return
        self.call(assemble_shard, str(self.out), job)
        self.written += 1

    def _write_rejected(self, job: RejectedJob) -> None:
        self.rejected_rows += job.rows
        path = self.folder.rejected / job.name
        try:
            meta = pq.read_schema(path).metadata or {}
        except (FileNotFoundError, OSError):
            meta = {}
        if meta.get(_IDENTITY_KEY) == job.identity.encode():
            return
        self.call(assemble_rejected, str(self.out), job)
        self.written += 1

    def finish(self) -> CombinedOutput:
        """Write the last, partial outputs and delete outputs past the new end."""
        if self._early:
            raise RuntimeError(f"units missing from the stream before {min(self._early)} (plan order)")
        for job in self.shards.finish():
            self._write_shard(job)
        for job in self.rejected.finish():
            self._write_rejected(job)
        _remove_beyond(self.folder.shards, SHARD_PREFIX, self.shards.index)
        _remove_beyond(self.folder.rejected, REJECTED_PREFIX, self.rejected.index)
        return CombinedOutput(
            shards=self.shards.index, samples=self.samples, rejected_rows=self.rejected_rows
        )


def _remove_beyond(folder: Path, prefix: str, count: int) -> None:
    for p in folder.glob(f"{prefix}*"):
        number = p.name[len(prefix) :].split(".")[0]
        if not number.isdigit() or int(number) >= count:
            p.unlink()
