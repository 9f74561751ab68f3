"""Run manifests: each stage's summary (``<stage>.json``), plus the atomic-write and digest helpers
every record uses (the run's settings, ``run.json``, are :mod:`groundedit.formats.runconfig`).

Per-unit progress is not here: each finished unit has its own commit file, written by the worker
(:mod:`groundedit.formats.commits`). Files are replaced atomically (temp file + rename), so a kill at any
point leaves the old or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from groundedit import __version__
from groundedit.formats.runfolder import RunFolder

SCHEMA_VERSION = 2


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (temp file + rename). ``durable=False`` skips the fsync: the
    file then survives a killed process, not a power cut (for bookkeeping that may be lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class StageSummary(BaseModel):
    """``<out>/manifests/<stage>.json``: where a stage stood at the end of the last run that ran it.

    Written by the driver once per run (not per unit: units are recorded by their own commits, see
    :mod:`groundedit.formats.commits`). ``complete`` means every planned unit has a current commit; a run
    that changes a stage's output clears ``complete`` on every later stage."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    stage: str
    spec_hash: str
    chain_hash: str
    version: str = __version__
    units_planned: int = 0
    units_done: int = Field(0, description="units with a current commit")
    units_ran: int = Field(0, description="units this run processed (the rest were already done)")
    units_blocked: int = Field(0, description="units whose upstream is not done")
    units_quarantined: int = 0
    rows_in: int = 0
    kept: int = 0
    rejected: dict[str, int] = Field(default_factory=dict, description="reason code -> count")
    complete: bool = False
    seconds: float = Field(0.0, description="worker wall seconds over the done units (their commits)")
    setup_seconds: float = Field(0.0, description="model loading charged to the done units")
    gpu_seconds: float = Field(0.0, description="GPU-seconds of the done units")
    devices: list[str] = Field(default_factory=list, description="where the done units' models ran")
    nodes: dict[str, int] = Field(
        default_factory=dict,
        description="done units per node that did them (from their commits; '' = not recorded)",
    )
    updated_at: str = ""
    shards: int | None = Field(None, description="sink: WebDataset shards written")
    exported: int | None = Field(None, description="sink: samples in the shards")
    rejected_rows: int | None = Field(None, description="sink: rows of rejected.parquet")

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @staticmethod
    def path(out: Path, stage: str) -> Path:
        return RunFolder(out).summary(stage)

    @classmethod
    def load(cls, out: Path, stage: str) -> StageSummary | None:
        """The stage's summary, or None (absent, or from an older layout this version redoes)."""
        p = cls.path(out, stage)
        if not p.is_file():
            return None
        try:
            return cls.model_validate_json(p.read_text())
        except ValueError:
            return None

    def save(self, out: Path) -> None:
        self.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_bytes(self.path(out, self.stage), self.model_dump_json(indent=1).encode())
