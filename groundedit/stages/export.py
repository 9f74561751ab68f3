"""export: kept samples → WebDataset shards; every dropped sample → ``rejected.parquet``.

A worker writes each unit's kept samples into a part tar (``data/export/<unit>.tar``): each
sample's members contiguous (``<key>.src.jpg``, ``<key>.grounded.jpg``, ``<key>.mask.png``,
``<key>.json`` and, once edits exist, ``<key>.edited.jpg``), every image read back with its digest
checked. Its commit lists each sample's byte span and every stage's rejected rows for the unit.
The driver then cuts the stream of parts, in unit order, into shards
``shards/groundedit-%06d.tar`` bounded by sample count and bytes (:mod:`groundedit.engine.sharding`), so
shard contents depend only on the data, never on timing or the executor.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from groundedit.formats.commits import PartSample
from groundedit.formats.manifest import digest
from groundedit.formats.tar import TarWriter, blob_digest, read_blob
from groundedit.records import ExportRecord, Provenance, Sample
from groundedit.stages.base import SinkStage

IMAGE_MEMBERS = ("src.jpg", "grounded.jpg", "edited.jpg", "mask.png")


class ExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1 << 30, ge=1 << 16)
    rejected_part_rows: int = Field(
        200_000, ge=1, description="rows per file of rejected.parquet/ (a new file starts at a unit boundary)"
    )


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
            "recipe": "pairs" if s.pair is not None else "sa1b",
            "pair": _pair(s) if s.pair is not None else None,
        },
        strict=False,
    )


def _pair(s: Sample) -> dict:
    p = s.pair
    region = None
    if p.region is not None:
        region = p.region.model_dump(exclude={"pixel_mask", "components"})
    return {
        "kind": p.kind,
        "origin": p.origin,
        "target_width": p.target_size[0],
        "target_height": p.target_size[1],
        "rescaled": p.rescaled,
        "global_edit": p.global_edit,
        "region": region,
        "got": p.got.model_dump() if p.got is not None else None,
    }


def _provenance(p: Provenance) -> dict:
    counts = [{"name": k, "count": v} for k, v in sorted((p.counts or {}).items())]
    return {**p.model_dump(), "counts": counts}


class ExportStage(SinkStage):
    """Writes each unit's kept samples as a tar *part* (in workers, in parallel); the driver then
    combines parts into shards in unit order (:mod:`groundedit.engine.sharding`)."""

    name = "export"
    Params = ExportParams
    reads = ("key", "source", "target")
    # the record's later fields are null (and its images absent) when the run's pipeline lacks their stage
    reads_if_present = ("tags", "edit_type", "instructions", "cot", "scores", "artifacts", "pair")

    def sample_members(self, s: Sample) -> list[tuple[str, bytes, str]]:
        """``(member, bytes, digest)`` of each member of the sample's export, the record last."""
        names = [m for m in IMAGE_MEMBERS if m in s.artifacts]
        # read_blob checks each image against the digest its stage recorded
        images = [(m, read_blob(s.artifacts[m], self.config.out), s.artifacts[m].digest) for m in names]
        record = export_record(s, [*names, "json"]).model_dump_json(by_alias=True).encode()
        return [*images, ("json", record, blob_digest(record))]

    def write_part(self, samples: list[Sample], path: Path) -> tuple[list[PartSample], str]:
        """Each sample's members, contiguous, in input order; return their byte spans and the part's
        digest. The tar's layout is fixed by its members, so the digest is taken over each member's
        name and content digest (the images' were recorded when they were written and checked when
        read), not over the part's bytes: the images are not hashed a second time."""
        path.unlink(missing_ok=True)  # a previous attempt's part
        if not samples:
            return [], ""
        writer = TarWriter(path)
        spans, members = [], []
        try:
            for s in samples:
                start = writer.bytes_written
                for member, data, data_digest in self.sample_members(s):
                    writer.add(f"{s.key}.{member}", data)
                    members.append((f"{s.key}.{member}", len(data), data_digest or blob_digest(data)))
                spans.append(
                    PartSample(key=s.key, start=start, end=writer.bytes_written, edit_type=s.edit_type)
                )
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return spans, digest(members)
