"""Per-unit completion records, written by the worker that finished the unit.

``<out>/commits/<stage>/<unit>.json`` is a :class:`UnitCommit`: written atomically (temp file +
rename) after the unit's files are in place, removed before they are replaced. So a commit on disk
always describes the files beside it, the driver never rewrites a growing manifest (its cost per
unit is one small file read, its memory bounded), and status and resume read the same records the
workers wrote. ``<unit>.failed.json`` is a :class:`UnitFailure`: the attempts at a unit in this run
(written before each attempt, so a worker killed mid-unit still counts one) and the last error; a
unit that used up its attempts is quarantined.

A commit is *current* when it carries the stage's current chain hash and the input fingerprint its
upstream provides now. Fingerprints are digests of content: of the input's member table and file
digests for the source stage, of the records a stage wrote (which carry the digests of the bytes
they reference) for the others.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from groundedit.formats.manifest import atomic_write_bytes, digest
from groundedit.formats.runfolder import COMMIT, FAILURE, RunFolder


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileStamp(_Record):
    """A loose input file as planning saw it: its content digest, and the stat fields that let the
    next planning reuse that digest instead of reading the file again."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    digest: str
    algorithm: str = Field("sha256", description="how digest was made (records from before xxh3 lack it)")


class PartSample(_Record):
    """One exported sample inside a unit's part tar: its members span ``[start, end)``."""

    key: str
    start: int
    end: int
    edit_type: str | None = None


class RejectedPart(_Record):
    """A stage's rejected rows for one unit (a Parquet file) and how many there are."""

    stage: str
    file: str
    rows: int


class UnitCommit(_Record):
    """One unit finished by one stage. Written by the worker, read by workers, status and resume."""

    stage: str
    unit: str
    chain_hash: str = Field(description="the stage's chain hash (its spec + every upstream spec)")
    input_fingerprint: str = Field(description="content fingerprint of the input it was made from")
    output_fingerprint: str = Field(description="content fingerprint of what it wrote")
    file: str | None = Field(None, description="kept samples (Parquet), relative to the run folder")
    rejected_file: str | None = Field(None, description="rejected samples (Parquet)")
    artifacts: str | None = Field(None, description="tar of the images the kept samples reference")
    rows_in: int
    kept: int
    rejected: dict[str, int] = Field(default_factory=dict, description="reason code -> count")
    seconds: float = Field(0.0, description="wall-clock seconds the worker spent on this unit")
    setup_seconds: float = Field(
        0.0, description="model loading (the worker's setup) charged to the first unit it ran"
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the stage's models ran")
    gpu_seconds: float | None = Field(
        None, description="(seconds + setup_seconds) x GPUs the worker held; null when no GPU was used"
    )
    committed_ns: int = Field(0, description="wall clock (ns since the epoch) when the commit was written")
    worker: str = Field("", description="host:pid of the process that wrote it")
    node: str = Field(
        "",
        description="the node that did the work: IP/start of the node id on a Ray cluster, the host "
        "name in a local run; empty in commits written before nodes were recorded",
    )
    source_stamps: list[FileStamp] = Field(
        default_factory=list, description="source stage: the loose input files it read"
    )
    part_samples: list[PartSample] = Field(
        default_factory=list, description="sink stage: the samples in the unit's part tar, in order"
    )
    rejected_parts: list[RejectedPart] = Field(
        default_factory=list, description="sink stage: every stage's rejected rows for the unit"
    )

    def is_current(self, chain_hash: str, input_fingerprint: str) -> bool:
        return self.chain_hash == chain_hash and self.input_fingerprint == input_fingerprint


def sink_input(earlier: list[UnitCommit]) -> str:
    """The input fingerprint of a unit at the sink: it takes every earlier stage's rows (kept and
    rejected), so its input is all of their outputs."""
    return digest([(c.stage, c.output_fingerprint) for c in earlier])


class UnitFailure(_Record):
    """Attempts at a unit in one run, and the last error (a quarantined unit's reason)."""

    stage: str
    unit: str
    run_id: str
    chain_hash: str
    input_fingerprint: str
    attempts: int
    error: str
    updated_ns: int = 0

    def counts_for(self, run_id: str, chain_hash: str, input_fingerprint: str) -> bool:
        return (self.run_id, self.chain_hash, self.input_fingerprint) == (
            run_id,
            chain_hash,
            input_fingerprint,
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_node = ""


def set_node_name(name: str) -> None:
    """Name this process's node (an executor that knows it, e.g. Ray's node id, says so once)."""
    global _node
    _node = name


def node_name() -> str:
    """The node commits written by this process are credited to (default: the host name)."""
    return _node or socket.gethostname()


class CommitStore:
    """The commit files of one run folder."""

    def __init__(self, out: Path):
        self.folder = RunFolder(out)

    def read(self, stage: str, unit: str) -> UnitCommit | None:
        return _load(UnitCommit, self.folder.commit(stage, unit))

    def write(self, commit: UnitCommit) -> UnitCommit:
        stamp = {"committed_ns": time.time_ns(), "worker": worker_name(), "node": node_name()}
        commit = commit.model_copy(update=stamp)
        atomic_write_bytes(self.folder.commit(commit.stage, commit.unit), commit.model_dump_json().encode())
        return commit

    def remove(self, stage: str, unit: str) -> None:
        self.folder.commit(stage, unit).unlink(missing_ok=True)

    def read_failure(self, stage: str, unit: str) -> UnitFailure | None:
        return _load(UnitFailure, self.folder.failure(stage, unit))

    def write_failure(self, failure: UnitFailure) -> None:
        failure = failure.model_copy(update={"updated_ns": time.time_ns()})
        # an attempt count lost to a power cut costs one more attempt: no fsync for it
        path = self.folder.failure(failure.stage, failure.unit)
        atomic_write_bytes(path, failure.model_dump_json().encode(), durable=False)

    def remove_failure(self, stage: str, unit: str) -> None:
        self.folder.failure(stage, unit).unlink(missing_ok=True)

    def units(self, stage: str) -> Iterator[str]:
        """Units with a commit or a failure record at ``stage`` (unordered)."""
        d = self.folder.commit_dir(stage)
        if not d.is_dir():
            return
        for entry in os.scandir(d):
            name = entry.name
            if name.startswith("."):
                continue
            if name.endswith(FAILURE):
                yield name[: -len(FAILURE)]
            elif name.endswith(COMMIT):
                yield name[: -len(COMMIT)]

    def read_all(self, stage: str) -> dict[str, UnitCommit]:
        """Every commit of ``stage`` (memory grows with the units: tools and tests on small runs)."""
        found = {u: self.read(stage, u) for u in set(self.units(stage))}
        return {u: c for u, c in sorted(found.items()) if c is not None}

    def forget(self, stage: str, unit: str) -> None:
        self.remove(stage, unit)
        self.remove_failure(stage, unit)


def _load(model, path: Path):
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
