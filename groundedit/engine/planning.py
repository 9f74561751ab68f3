"""Planning: the run's input as an ordered list of units with content fingerprints, streamed to disk.

The source stage lists its input lazily (one tar or folder at a time, ``--limit`` applied while
listing); each unit gets a fingerprint of its content: the tar member table (names, offsets,
sizes) for tar members, size + content digest (XXH3-128) for loose files. A loose file is read again only when its
size, mtime or inode differ from what the unit's last commit recorded, so ``touch`` or an rsync
without times costs a re-read, never a rerun; a tar is listed again only when its size, mtime or
inode differ from its listing's (``manifests/listings/``). Units go to ``<out>/manifests/plan/`` as they are
planned (Parquet, one row group per unit), the entries of a unit only when the source stage must
(re)do it. The driver keeps one unit in memory, and duplicate keys are found through an on-disk
index; memory stays bounded by the largest tar or folder, not by the input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, TypeAdapter

from groundedit.engine.tickets import Ticket
from groundedit.formats.commits import CommitStore, FileStamp
from groundedit.formats.listing import TarListings
from groundedit.formats.manifest import atomic_write_bytes
from groundedit.formats.runfolder import PLAN_INFO, PLAN_PART, PLAN_PARTS, RunFolder
from groundedit.formats.scan import KeyIndex, unit_fingerprint
from groundedit.formats.tar import DIGEST_ALGORITHM, file_digest
from groundedit.records import BlobRef, SourceEntry

UNITS_PER_PART = 512
_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("unit", pa.string()),
        ("rows", pa.int64()),
        ("fingerprint", pa.string()),
        ("entries", pa.string()),
        ("stamps", pa.string()),
    ]
)
# a row group per unit: compressing its few bytes of ids costs more than it saves (entries are JSON)
_COMPRESSION = {
    "seq": "none",
    "unit": "none",
    "rows": "none",
    "fingerprint": "none",
    "entries": "zstd",
    "stamps": "zstd",
}
_ENTRIES = TypeAdapter(list[SourceEntry])
_STAMPS = TypeAdapter(list[FileStamp])


class PlanInfo(BaseModel):
    """``manifests/plan/plan.json``: totals of the plan, written last."""

    model_config = ConfigDict(extra="forbid")
    units: int
    rows: int


class PlanPart(BaseModel):
    """One part file of a plan: its name and the plan positions (``seq``) it holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    first_seq: int
    units: int


class PlanWriter:
    """Writes a plan into a temp folder and swaps it in on :meth:`commit`."""

    def __init__(self, out: Path):
        self.final = RunFolder(out).plan
        self.tmp = self.final.with_name(f".plan.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self._writer: pq.ParquetWriter | None = None
        self._part = -1
        self.units = self.rows = 0

    def add(self, unit: str, rows: int, fingerprint: str, entries, stamps) -> Ticket:
        if self.units % UNITS_PER_PART == 0:
            self._close_part()
            self._part += 1
            self._writer = pq.ParquetWriter(self.tmp / self._name(), _SCHEMA, compression=_COMPRESSION)
        row = {
            "seq": [self.units],
            "unit": [unit],
            "rows": [rows],
            "fingerprint": [fingerprint],
            "entries": [_ENTRIES.dump_json(entries).decode() if entries is not None else ""],
            "stamps": [_STAMPS.dump_json(stamps).decode()],
        }
        self._writer.write_table(pa.table(row, schema=_SCHEMA))  # one row group: read alone later
        ticket = Ticket(
            seq=self.units,
            unit=unit,
            rows=rows,
            fingerprint=fingerprint,
            plan_part=self._name(),
            plan_row=self.units % UNITS_PER_PART,
        )
        self.units += 1
        self.rows += rows
        return ticket

    def _name(self) -> str:
        return PLAN_PART.format(self._part)

    def _close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> None:
        self._close_part()
        info = PlanInfo(units=self.units, rows=self.rows)
        atomic_write_bytes(self.tmp / PLAN_INFO, info.model_dump_json().encode())
        old = self.final.with_name(f".plan.old-{os.getpid()}")
        if self.final.exists():
            self.final.rename(old)
        self.tmp.rename(self.final)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        self._close_part()
        shutil.rmtree(self.tmp, ignore_errors=True)


class PlanReader:
    """The plan of the last planning (``manifests/plan/``)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.dir = RunFolder(out).plan
        self._open: tuple[str, pq.ParquetFile] | None = None  # the part file read last

    def exists(self) -> bool:
        return (self.dir / PLAN_INFO).is_file()

    def info(self) -> PlanInfo:
        return PlanInfo.model_validate_json((self.dir / PLAN_INFO).read_bytes())

    def parts(self) -> list[PlanPart]:
        """The plan's part files in plan order, with the units each holds (their footers only)."""
        parts, first = [], 0
        for path in sorted(self.dir.glob(PLAN_PARTS)):
            units = pq.ParquetFile(path).metadata.num_rows
            parts.append(PlanPart(name=path.name, first_seq=first, units=units))
            first += units
        return parts

    def part_tickets(self, part: str) -> list[Ticket]:
        """The tickets of one part file (at most :data:`UNITS_PER_PART`), in plan order."""
        table = pq.read_table(self.dir / part, columns=["seq", "unit", "rows", "fingerprint"])
        return [Ticket(**row, plan_part=part, plan_row=i) for i, row in enumerate(table.to_pylist())]

    def tickets(self) -> Iterator[Ticket]:
        """Every planned unit, in plan order (entries left on disk; one part in memory at a time)."""
        for part in self.parts():
            yield from self.part_tickets(part.name)

    def entries(self, ticket: Ticket) -> tuple[list[SourceEntry], list[FileStamp]]:
        """The source entries of one unit (read alone: one row group)."""
        if self._open is None or self._open[0] != ticket.plan_part:
            self._open = (ticket.plan_part, pq.ParquetFile(self.dir / ticket.plan_part))
        row = (
            self._open[1]
            .read_row_group(ticket.plan_row, columns=["unit", "entries", "stamps"])
            .to_pylist()[0]
        )
        if row["unit"] != ticket.unit:
            raise RuntimeError(f"plan row {ticket.plan_part}:{ticket.plan_row} is not unit {ticket.unit}")
        if not row["entries"]:
            raise RuntimeError(f"the plan holds no entries for unit {ticket.unit} (it was done)")
        return _ENTRIES.validate_json(row["entries"]), _STAMPS.validate_json(row["stamps"])


def stamp_loose_files(entries: list[SourceEntry], previous: list[FileStamp]) -> tuple[list, list[FileStamp]]:
    """Give every loose-file reference of ``entries`` its size and content digest, reusing a
    previous digest when the file's size, mtime and inode are unchanged. Tar members keep their
    member-table identity (offset, size); their digests are recorded when the source stage reads
    them."""
    known = {s.path: s for s in previous}
    stamps: dict[str, FileStamp] = {}

    def stamped(ref: BlobRef | None) -> BlobRef | None:
        if ref is None or ref.member is not None:
            return ref
        if ref.path not in stamps:
            try:
                st = os.stat(ref.path)
            except OSError:
                return ref  # gone: the source stage reports it
            old = known.get(ref.path)
            same = old is not None and (old.size, old.mtime_ns, old.inode, old.algorithm) == (
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                DIGEST_ALGORITHM,
            )
            stamps[ref.path] = FileStamp(
                path=ref.path,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                inode=st.st_ino,
                digest=old.digest if same else file_digest(ref.path),
                algorithm=DIGEST_ALGORITHM,
            )
        s = stamps[ref.path]
        return ref.model_copy(update={"size": s.size, "digest": s.digest})

    out = []
    for e in entries:
        update = {"image": stamped(e.image), "annotation": stamped(e.annotation)}
        if e.pair is not None:  # an edit pair's other image is an input file too
            update["pair"] = e.pair.model_copy(update={"target": stamped(e.pair.target)})
        out.append(e.model_copy(update=update))
    return out, list(stamps.values())


@dataclass
class PlannedSource:
    """One unit of the plan: ``entries`` (and the loose files' ``stamps``) only when the source
    stage must (re)do it (``done`` false)."""

    unit: str
    rows: int
    fingerprint: str
    entries: list[SourceEntry] | None
    stamps: list[FileStamp]
    done: bool


class SourcePlanner:
    """Streams the source stage's units into a plan, deciding which ones the stage must (re)do.
    Input tars listed by an earlier planning of the run folder are not read again while unchanged
    (:mod:`groundedit.formats.listing`); a unit of one that is done costs a commit read."""

    def __init__(self, stage, chain_hash: str, commits: CommitStore):
        self.stage = stage
        self.chain_hash = chain_hash
        self.commits = commits
        self.listings = TarListings(RunFolder(stage.config.out).listings)
        self._keys_dir = tempfile.mkdtemp(prefix="groundedit-keys-")
        self.keys = KeyIndex(Path(self._keys_dir) / "keys.sqlite")

    def units(self) -> Iterator[PlannedSource]:
        """The plan's units, in plan order."""
        try:
            for planned in self.stage.plan(self.keys, self.listings):
                prev = self.commits.read(self.stage.name, planned.unit)
                fp = planned.fingerprint
                if fp is not None:  # a tar's unit: no loose file to stamp, entries only to redo it
                    if prev is not None and prev.is_current(self.chain_hash, fp):
                        yield PlannedSource(planned.unit, planned.rows, fp, None, [], True)
                    else:
                        yield PlannedSource(planned.unit, planned.rows, fp, planned.entries(), [], False)
                    continue
                entries, stamps = stamp_loose_files(planned.entries(), prev.source_stamps if prev else [])
                fp = unit_fingerprint(entries)
                done = prev is not None and prev.is_current(self.chain_hash, fp)
                yield PlannedSource(planned.unit, len(entries), fp, None if done else entries, stamps, done)
        finally:
            self.close()

    def close(self) -> None:
        self.keys.close()
        shutil.rmtree(self._keys_dir, ignore_errors=True)
