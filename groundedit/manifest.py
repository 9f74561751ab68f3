"""Run manifests: what each stage finished, under which configuration, with what counts.

``<out>/manifests/<stage>.json`` lists the stage's completed units. A unit counts as done only if
its record carries the stage's current chain hash (its spec hash combined with every upstream
stage's) and the fingerprint of the input it was made from; anything else is redone. Manifests
are replaced atomically (temp file + rename), so a kill at any point leaves the old or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from groundedit import __version__

SCHEMA_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class UnitRecord(BaseModel):
    """One finished unit of a stage."""

    model_config = ConfigDict(extra="forbid")
    unit: str
    file: str | None = Field(None, description="kept samples (Parquet), relative to the run folder")
    rejected_file: str | None = Field(None, description="rejected samples (Parquet)")
    artifacts: str | None = Field(None, description="artifact tar the kept samples reference")
    rows_in: int
    kept: int
    rejected: dict[str, int] = Field(default_factory=dict, description="reason code -> count")
    chain_hash: str
    input_fingerprint: str
    seconds: float = Field(0.0, description="wall-clock seconds the worker spent on this unit")
    setup_seconds: float = Field(
        0.0, description="model loading (the worker's setup) charged to the first unit it ran"
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the stage's models ran")
    gpu_seconds: float | None = Field(
        None,
        description="(seconds + setup_seconds) x GPUs the worker held; null when no GPU was used",
    )

    @property
    def output_fingerprint(self) -> str:
        """Identifies this unit's output for the next stage: outputs are a function of the stage's
        configuration and the input, so no bytes need hashing."""
        return digest(self.chain_hash, self.input_fingerprint)


class StageManifest(BaseModel):
    """Progress of one stage in one run folder."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    stage: str
    spec_hash: str
    chain_hash: str
    version: str = __version__
    units_planned: int = 0
    complete: bool = False
    updated_at: str = ""
    units: dict[str, UnitRecord] = Field(default_factory=dict)
    extra: dict[str, object] = Field(default_factory=dict, description="stage-specific state (export cursor)")

    @staticmethod
    def path(out: Path, stage: str) -> Path:
        return Path(out) / "manifests" / f"{stage}.json"

    @classmethod
    def load(cls, out: Path, stage: str) -> StageManifest | None:
        p = cls.path(out, stage)
        if not p.is_file():
            return None
        return cls.model_validate_json(p.read_text())

    def save(self, out: Path) -> None:
        self.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_bytes(self.path(out, self.stage), self.model_dump_json(indent=1).encode())

    def totals(self) -> tuple[int, int, Counter]:
        """(rows in, kept, rejected by reason) over finished units."""
        rejected: Counter = Counter()
        rows = kept = 0
        for u in self.units.values():
            rows += u.rows_in
            kept += u.kept
            rejected.update(u.rejected)
        return rows, kept, rejected


class RunInfo(BaseModel):
    """``<out>/manifests/run.json``: the arguments of the latest run in this folder."""

    model_config = ConfigDict(extra="forbid")
    input: str
    profile: str
    seed: int
    limit: int | None = None
    version: str = __version__

    @staticmethod
    def path(out: Path) -> Path:
        return Path(out) / "manifests" / "run.json"

    @classmethod
    def load(cls, out: Path) -> RunInfo | None:
        p = cls.path(out)
        return cls.model_validate_json(p.read_text()) if p.is_file() else None

    def save(self, out: Path) -> None:
        atomic_write_bytes(self.path(out), self.model_dump_json(indent=1).encode())
