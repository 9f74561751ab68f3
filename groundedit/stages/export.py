"""export: kept samples → WebDataset shards; every dropped sample → ``rejected.parquet``.

Shards are ``shards/groundedit-%06d.tar``, bounded by sample count and bytes, each sample's members
contiguous (``<key>.src.jpg``, ``<key>.grounded.jpg``, ``<key>.mask.png``, ``<key>.json`` and, once
edits exist, ``<key>.edited.jpg``), each shard followed by a ``.stats.json``. Samples are written in
unit order, so shard contents depend only on the data. The manifest records each finished shard
with the input position after it; a killed export resumes from there, and a finished one with
unchanged input does nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from groundedit.faults import crash_point
from groundedit.manifest import atomic_write_bytes
from groundedit.records import ExportRecord, Provenance, Sample
from groundedit.stages.base import SinkStage
from groundedit.storage import REJECTED_SCHEMA, read_rows, write_table
from groundedit.tario import TarWriter, read_blob

SHARD_PATTERN = "groundedit-{:06d}.tar"
IMAGE_MEMBERS = ("src.jpg", "grounded.jpg", "edited.jpg", "mask.png")


class ExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1 << 30, ge=1 << 16)


def box_1000(
    box: tuple[int, int, int, int], width: int, height: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """GoT's text convention: corners scaled to integers in [0, 1000)."""
    x1, y1, x2, y2 = box

    def s(v: int, n: int) -> int:
        return min(999, max(0, int(v * 1000 / n)))

    return (s(x1, width), s(y1, height)), (s(x2, width), s(y2, height))


def export_record(s: Sample, members: list[str]) -> ExportRecord:
    """The strict exported JSON of a kept sample."""
    t, src = s.target, s.source
    box = tuple(int(v) for v in t.box_xyxy)
    original_width, original_height = src.original_size or (src.width, src.height)
    return ExportRecord.model_validate(
        {
            "key": s.key,
            "source": {
                **src.model_dump(include={"dataset", "image_id", "file_name", "width", "height"}),
                "original_width": original_width,
                "original_height": original_height,
            },
            "target": {
                "label": t.label or "",
                "candidate_source": t.source,
                "box_xyxy": box,
                "box_1000": box_1000(box, s.source.width, s.source.height),
                "area": t.area,
                "score": float(t.score),
            },
            "tags": [tag.name for tag in s.tags],
            # All or nothing: a vocabulary either has a Chinese list or not.
            "tags_zh": [tag.name_zh for tag in s.tags] if all(tag.name_zh for tag in s.tags) else [],
            "edit_type": s.edit_type,
            "instructions": s.instructions.model_dump() if s.instructions else None,
            "cot": s.cot.model_dump(by_alias=True) if s.cot else None,
            "scores": s.scores.model_dump(),
            "members": members,
            "provenance": [_provenance(p) for p in s.provenance],
        },
        strict=False,
    )


def _provenance(p: Provenance) -> dict:
    counts = [{"name": k, "count": v} for k, v in sorted((p.counts or {}).items())]
    return {**p.model_dump(), "counts": counts}


class ExportStage(SinkStage):
    name = "export"
    Params = ExportParams

    def sample_members(self, s: Sample) -> list[tuple[str, bytes]]:
        names = [m for m in IMAGE_MEMBERS if m in s.artifacts]
        data = [(m, read_blob(s.artifacts[m], self.ctx.out)) for m in names]
        record = export_record(s, [*names, "json"])
        return [*data, ("json", record.model_dump_json(by_alias=True).encode())]

    def run(self, inputs: list[tuple[str, Path]], rejected_files: list[Path], progress) -> dict:
        """Write shards from ``inputs`` (unit id, kept-samples Parquet), resuming from
        ``progress.state``; then gather ``rejected_files`` into ``rejected.parquet``."""
        out = self.ctx.out
        shard_dir = out / "shards"
        shard_dir.mkdir(parents=True, exist_ok=True)
        state = progress.state
        shards: list[dict] = state.setdefault("shards", [])
        for stale in shard_dir.glob("groundedit-*"):
            if stale.name.split(".")[0] not in {Path(s["name"]).stem for s in shards}:
                stale.unlink()  # written after the last recorded shard: redo from the cursor
        for stale in shard_dir.glob(".*.tmp-*"):
            stale.unlink()
        unit_i, row_i = shards[-1]["cursor"] if shards else (0, 0)
        writer: TarWriter | None = None
        count = 0
        types: Counter = Counter()
        first = last = None

        def close_shard(cursor: tuple[int, int]) -> None:
            nonlocal writer, count, types, first, last
            path = writer.close()
            stats = {
                "shard": path.name,
                "samples": count,
                "bytes": path.stat().st_size,
                "sha256": writer.sha256,
                "first_key": first,
                "last_key": last,
                "edit_types": dict(sorted(types.items())),
            }
            atomic_write_bytes(path.with_suffix(".stats.json"), json.dumps(stats, indent=1).encode())
            shards.append({"name": path.name, "samples": count, "cursor": list(cursor)})
            progress.checkpoint()
            crash_point("export:shard-written")
            writer, count, types, first, last = None, 0, Counter(), None, None

        p = self.params
        for ui in range(unit_i, len(inputs)):
            samples = read_rows(inputs[ui][1], Sample)
            for ri in range(row_i if ui == unit_i else 0, len(samples)):
                s = samples[ri]
                members = self.sample_members(s)
                size = sum(len(d) + 1024 for _, d in members)
                if writer is not None and (
                    count >= p.shard_max_samples or writer.bytes_written + size > p.shard_max_bytes
                ):
                    close_shard((ui, ri))
                if writer is None:
                    writer = TarWriter(shard_dir / SHARD_PATTERN.format(len(shards)))
                for member, data in members:
                    writer.add(f"{s.key}.{member}", data)
                count += 1
                types[s.edit_type or "none"] += 1
                first = first or s.key
                last = s.key
                progress.advance(1)
        if writer is not None:
            close_shard((len(inputs), 0))
        tables = [pq.read_table(f, schema=REJECTED_SCHEMA) for f in rejected_files]
        write_table(
            pa.concat_tables(tables) if tables else REJECTED_SCHEMA.empty_table(), out / "rejected.parquet"
        )
        return {"shards": len(shards), "samples": sum(s["samples"] for s in shards)}
