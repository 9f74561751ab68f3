"""The published output format: WebDataset shards ``shards/groundedit-NNNNNN.tar``, each with a
``.stats.json`` written after it (its completion record), and ``rejected.parquet/part-NNNNNN.parquet``.
Written by :mod:`groundedit.engine.sharding`; read by :mod:`groundedit.formats.rundata`, status and
the training reader.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from groundedit.formats.runfolder import RunFolder

SHARD_PREFIX = "groundedit-"
SHARD_PATTERN = SHARD_PREFIX + "{:06d}.tar"
SHARD_GLOB = SHARD_PREFIX + "*.tar"
STATS_SUFFIX = ".stats.json"
STATS_GLOB = SHARD_PREFIX + "*" + STATS_SUFFIX
REJECTED_PREFIX = "part-"  # files of RunFolder.rejected
REJECTED_PATTERN = REJECTED_PREFIX + "{:06d}.parquet"


def stats_path(shard: Path) -> Path:
    """The stats record of ``shard`` (``groundedit-000001.tar`` → ``groundedit-000001.stats.json``)."""
    return shard.with_suffix(STATS_SUFFIX)


class ShardStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    """``shards/<shard>.stats.json``: what the shard holds; written after the shard itself."""

    shard: str
    samples: int
    bytes: int
    sha256: str
    first_key: str
    last_key: str
    edit_types: dict[str, int]
    identity: str = Field(description="digest of the unit parts and sample ranges it was cut from")
    committed_ns: int = Field(description="wall clock (ns since the epoch) when it was written")


def read_shard_stats(out: Path) -> list[ShardStats]:
    """The stats of every finished shard of the run folder ``out``, in shard order."""
    stats = []
    for p in sorted(RunFolder(out).shards.glob(STATS_GLOB)):
        stats.append(ShardStats.model_validate(json.loads(p.read_text())))
    return stats
