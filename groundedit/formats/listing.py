"""Listings of input tars kept between plannings: re-planning unchanged input reads no tar header.

Per input tar, two Parquet files under ``<out>/manifests/listings/``, named after the tar (its file
name and a digest of the path it is read under, which is all a worker that finds it changed knows):

- ``<group>.members.parquet``: the tar's member table (name, data offset, size, and why a name is
  unsafe), as :func:`groundedit.formats.tar.scan_tar` lists it;
- ``<group>.units.parquet``: the units planned from the tar on its own, for one unit size: one row
  per entry (its unit, key, and where the key index says the file is), and each unit's size and
  content fingerprint in the file's metadata.

A listing is used while the tar's path, size, mtime (ns) and inode are the ones it recorded and it
was written by this version of groundedit; otherwise the tar is listed again. Files are written
whole under a temp name and renamed, one pair per tar (never one file rewritten per tar), and a
planning that listed the whole input removes the listings of tars it no longer saw.

A tar rewritten in place with the same size, mtime and inode keeps its listing. Its members' bytes
are still checked when read: the source stage checks the tar header in front of each member it
reads (:func:`groundedit.formats.tar.read_blob`), and every later read checks the digest the source
stage recorded, so changed bytes fail the unit (``BlobChanged``) and are redone on the next run. A
source-stage worker that finds a member changed also forgets the tar's listing
(:meth:`TarListings.forget`), so the next planning lists the tar again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from groundedit import __version__
from groundedit.formats.tar import TarMember

FORMAT = 1  # bump when a listing's content or the way units are derived from it changes
_META = b"groundedit.listing"
_MEMBERS = pa.schema(
    [("name", pa.string()), ("offset", pa.int64()), ("size", pa.int64()), ("unsafe", pa.string())]
)
_ENTRIES = pa.schema(
    [("unit", pa.string()), ("key", pa.string()), ("folder", pa.string()), ("name", pa.string())]
)


@dataclass(frozen=True)
class TarStamp:
    """The stat fields a listing is valid for, and the path the tar was listed under."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | Path) -> TarStamp:
        st = os.stat(path)
        return cls(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class ListedUnit:
    unit: str
    rows: int
    fingerprint: str


@dataclass
class ListedUnits:
    """The units planned from one tar on its own; per entry (in plan order) the key it got and where
    the key index records its file (folder, name), read only when asked for (:meth:`columns`).

    ``prefix`` identifies the groups planned before the tar when it was listed and ``alone`` says
    none of its keys was among theirs: planned after the same groups again, its keys cannot collide
    and need not be looked up."""

    units: list[ListedUnit]
    prefix: str = ""
    alone: bool = False
    keys: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    source: Path | None = None  # the listing file the columns are still in

    @property
    def rows(self) -> int:
        return sum(u.rows for u in self.units)

    def columns(self) -> tuple[list[str], list[str], list[str]]:
        if self.source is not None:
            cols = pq.read_table(self.source, columns=["key", "folder", "name"]).to_pydict()
            self.keys, self.folders, self.names = cols["key"], cols["folder"], cols["name"]
            self.source = None
        return self.keys, self.folders, self.names


class TarListings:
    """The listings folder of one run folder (:attr:`groundedit.formats.runfolder.RunFolder.listings`)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, tar: str, kind: str) -> Path:
        return self.folder / f"{_stem(tar)}.{kind}.parquet"

    def _open(self, tar: str, kind: str, want: dict) -> tuple[pq.ParquetFile, dict] | None:
        """A listing file whose metadata holds ``want`` (its footer read, not its data), else None."""
        try:
            f = pq.ParquetFile(self._path(tar, kind))
            meta = json.loads((f.schema_arrow.metadata or {}).get(_META, b"{}"))
        except (OSError, ValueError, pa.ArrowException):
            return None  # missing, or not a listing we can read: list the tar again
        if any(meta.get(k) != v for k, v in want.items()):
            return None
        return f, meta

    @staticmethod
    def _identity(stamp: TarStamp) -> dict:
        tar = [stamp.path, stamp.size, stamp.mtime_ns, stamp.inode]
        return {"format": FORMAT, "version": __version__, "tar": tar}

    def members(self, stamp: TarStamp) -> list[tuple[TarMember, str | None]] | None:
        """The tar's member table (as :func:`~groundedit.formats.tar.scan_tar` yields it), if listed."""
        found = self._open(stamp.path, "members", self._identity(stamp))
        if found is None:
            return None
        cols = found[0].read().to_pydict()
        return [
            (TarMember(n, o, s), u)
            for n, o, s, u in zip(cols["name"], cols["offset"], cols["size"], cols["unsafe"], strict=True)
        ]

    def units(self, stamp: TarStamp, relative: str, unit_size: int) -> ListedUnits | None:
        """The units planned from the tar at ``unit_size`` (listed under ``relative``), if listed."""
        want = self._identity(stamp) | {"relative": relative, "unit_size": unit_size}
        found = self._open(stamp.path, "units", want)
        if found is None:
            return None
        f, meta = found
        listed = ListedUnits(
            [ListedUnit(u, r, fp) for u, r, fp in meta["units"]],
            meta["prefix"],
            meta["alone"],
            source=self._path(stamp.path, "units"),
        )
        return listed if listed.rows == f.metadata.num_rows else None

    def save_members(self, stamp: TarStamp, members: list[tuple[TarMember, str | None]]) -> None:
        cols = {
            "name": [m.name for m, _ in members],
            "offset": [m.offset for m, _ in members],
            "size": [m.size for m, _ in members],
            "unsafe": [u for _, u in members],
        }
        self._write(stamp.path, "members", pa.table(cols, schema=_MEMBERS), self._identity(stamp))

    def save_units(self, stamp: TarStamp, relative: str, unit_size: int, listed: ListedUnits) -> None:
        per_entry = [u.unit for u in listed.units for _ in range(u.rows)]
        keys, folders, names = listed.columns()
        table = pa.table({"unit": per_entry, "key": keys, "folder": folders, "name": names}, schema=_ENTRIES)
        meta = self._identity(stamp) | {
            "relative": relative,
            "unit_size": unit_size,
            "units": [[u.unit, u.rows, u.fingerprint] for u in listed.units],
            "prefix": listed.prefix,
            "alone": listed.alone,
        }
        self._write(stamp.path, "units", table, meta)

    def _write(self, tar: str, kind: str, table: pa.Table, meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(tar, kind)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)

    def forget(self, tar: str | Path) -> None:
        """Drop a tar's listing (its bytes are not what the listing says)."""
        for kind in ("members", "units"):
            self._path(str(tar), kind).unlink(missing_ok=True)

    def prune(self, tars: set[str]) -> None:
        """Remove every file but the listings of ``tars`` (tars gone from the input, temp files of a
        planning that was killed)."""
        if not self.folder.is_dir():
            return
        keep = {self._path(t, k).name for t in tars for k in ("members", "units")}
        for p in self.folder.iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)


def _stem(tar: str) -> str:
    """A listing's file name: the tar's own name (readable) and a digest of the path it is read under."""
    return f"{Path(tar).name[:100]}-{xxhash.xxh3_64_hexdigest(tar.encode('utf-8', 'surrogateescape'))}"
