"""The published output format: WebDataset shards ``shards/groundedit-NNNNNN.tar``, each with a
``.stats.json`` written after it (its completion record), and ``rejected.parquet/part-NNNNNN.parquet``.
Written by :mod:`groundedit.engine.sharding`; read by :mod:`groundedit.formats.rundata`, status and
the training reader.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from groundedit.formats.runfolder import REJECTED, RunFolder

SHARD_PATTERN = "groundedit-{:06d}.tar"
SHARD_GLOB = "groundedit-*.tar"
STATS_GLOB = "groundedit-*.stats.json"
REJECTED_DIR = REJECTED
REJECTED_PATTERN = "part-{:06d}.parquet"


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
    stats = []
    for p in sorted(RunFolder(out).shards.glob(STATS_GLOB)):
        stats.append(ShardStats.model_validate(json.loads(p.read_text())))
    return stats
