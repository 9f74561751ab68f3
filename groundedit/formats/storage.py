"""Parquet files of samples: one row per sample, the record as JSON beside a few flat columns.

Keeping the record as JSON lets every stage add fields without a schema migration, while the flat
columns (key, stage, reason) make the rejected sidecar easy to query with any Parquet tool.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from groundedit.records import Sample

T = TypeVar("T", bound=BaseModel)

_KEPT = pa.schema([("key", pa.string()), ("record", pa.string())])
REJECTED_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
        ("record", pa.string()),
    ]
)


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _records_digest(records: list[str]) -> str:
    """What a file of records holds, independent of how Parquet lays it out."""
    h = hashlib.sha256()
    for r in records:
        h.update(r.encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def write_rows(rows: list[BaseModel], path: Path) -> str:
    """Write models (samples or source entries) with their key, atomically; return the digest of
    what was written (the records, which carry the digests of the bytes they reference)."""
    records = [r.model_dump_json(by_alias=True) for r in rows]
    table = pa.table({"key": [r.key for r in rows], "record": records}, schema=_KEPT)
    _write_atomic(table, path)
    return _records_digest(records)


def rejected_table(samples: list[Sample]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in REJECTED_SCHEMA.names}
    for s in samples:
        rej = s.rejection
        assert rej is not None
        cols["key"].append(s.key)
        cols["stage"].append(rej.stage)
        cols["reason"].append(rej.reason)
        cols["detail"].append(rej.detail)
        cols["raw"].append(rej.raw)
        cols["record"].append(s.model_dump_json(by_alias=True))
    return pa.table(cols, schema=REJECTED_SCHEMA)


def write_rejected(samples: list[Sample], path: Path) -> str:
    """Write rejected samples atomically; return the digest of what was written."""
    table = rejected_table(samples)
    _write_atomic(table, path)
    return _records_digest(table.column("record").to_pylist())


def write_table(table: pa.Table, path: Path) -> None:
    _write_atomic(table, path)


def read_rows(path: Path, model: type[T]) -> list[T]:
    table = pq.read_table(path, columns=["record"])
    return [model.model_validate_json(r) for r in table.column("record").to_pylist()]


def count_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows
