"""Tar files without extraction: scan members with their byte offsets, read one by offset (checking
its length and digest), write deterministic tars (fixed metadata, so the same members give
byte-identical files).

Used for SA-1B input shards, for the per-unit artifact packs stages write, and for the exported
WebDataset shards.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from groundedit.records import BlobRef

_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class TarMember:
    """A regular-file member of a tar: its normalised name and where its data starts."""

    name: str
    offset: int
    size: int


def unsafe_member_reason(name: str) -> str | None:
    """Return why a member name must not be used (absolute, or escaping with ``..``), else None.
    (String operations, not pathlib: planning calls this for every member of every tar.)"""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute member path"
    if ".." in name.replace("\\", "/").split("/"):
        return "member path contains '..'"
    return None


def normalise_member_name(name: str) -> str:
    """Drop a leading ``./`` (SA-1B tars may carry it)."""
    while name.startswith("./"):
        name = name[2:]
    return name


def scan_tar(path: str | Path) -> Iterator[tuple[TarMember, str | None]]:
    """Yield every regular-file member with its data offset, and a reason if its name is unsafe.

    Reads only headers (seeking over data), so listing a 10 GB shard touches kilobytes, and keeps
    none of them (tarfile would keep every header it read).
    """
    with tarfile.open(path, mode="r:") as tar:
        while (info := tar.next()) is not None:
            tar.members.clear()
            if not info.isfile():
                continue
            yield (
                TarMember(normalise_member_name(info.name), info.offset_data, info.size),
                unsafe_member_reason(info.name),
            )


# Content digests of inputs and intermediate files detect change, not attack: XXH3-128 (xxhash)
# reads ~40 GB/s where sha256 reads ~1.7 GB/s, and a sample's bytes are digested and checked several
# times on their way to the shards. Published digests (shard stats) stay sha256.
DIGEST_ALGORITHM = "xxh3-128"
DIGEST_CHARS = 32


def blob_digest(data: bytes) -> str:
    """The digest a :class:`BlobRef` records (:data:`DIGEST_ALGORITHM`, 32 hex digits)."""
    return xxhash.xxh3_128_hexdigest(data)


def file_digest(path: str | Path) -> str:
    """:func:`blob_digest` of a file's content, read in chunks."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class BlobChanged(OSError):
    """The bytes behind a reference are not the ones recorded when it was made (the file was
    rewritten, truncated or replaced since): whatever was built on them must be redone."""

    def __init__(self, ref: BlobRef, why: str):
        super().__init__(f"{ref.member or ref.path} changed since it was recorded ({why}): {ref.path}")
        self.ref = ref


def read_blob(ref: BlobRef, base: str | Path | None = None) -> bytes:
    """Read the bytes a :class:`BlobRef` points at, checking the recorded length and digest.
    Relative paths resolve against ``base``. A tar member with no digest yet (an input the source
    stage reads by the offset planning listed) is checked against the tar header in front of it.
    Raises :class:`BlobChanged` on a mismatch."""
    path = Path(ref.path)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    with open(path, "rb") as f:
        if ref.offset is None:
            data = f.read()
        else:
            if ref.member is not None and ref.digest is None:
                _check_header(f, ref)
            f.seek(ref.offset)
            data = f.read(ref.size)
    if ref.size is not None and len(data) != ref.size:
        raise BlobChanged(ref, f"{len(data)} bytes where {ref.size} were recorded")
    if ref.digest is not None and blob_digest(data) != ref.digest:
        raise BlobChanged(ref, "digest differs")
    return data


def _check_header(f, ref: BlobRef) -> None:
    """The block before a member's data is its header: a regular file of the recorded size and
    name (a name too long for the header's field is only compared as far as the field holds it).
    Otherwise the tar was rewritten since it was listed (a listing is trusted while the tar's size,
    mtime and inode are unchanged)."""
    why = "no tar header of it in front of its data"
    if ref.offset >= _BLOCK:
        f.seek(ref.offset - _BLOCK)
        try:
            info = tarfile.TarInfo.frombuf(f.read(_BLOCK), tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError:
            info = None
        if info is not None and info.isfile():
            name = normalise_member_name(info.name)
            if info.size != ref.size:
                why = f"the header in front of it says {info.size} bytes where {ref.size} were listed"
            elif name == ref.member or (len(info.name.encode()) >= 99 and ref.member.startswith(name)):
                return
            else:
                why = f"the header in front of it names {name!r}"
    raise BlobChanged(ref, why)


class TarWriter:
    """Write a tar member by member, recording each member's data offset.

    Metadata is fixed (mtime 0, uid/gid 0, mode 0644), so equal inputs give equal bytes. The file is
    written under a temporary name and renamed into place by :meth:`close`, so a reader never sees
    a partial tar; :meth:`abort` removes the temporary file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self.members = 0

    def _write(self, data: bytes) -> None:
        self._f.write(data)

    @property
    def bytes_written(self) -> int:
        return self._f.tell()

    def mark(self) -> tuple[int, int]:
        """A point to :meth:`rollback` to (position, members)."""
        return self._f.tell(), self.members

    def rollback(self, mark: tuple[int, int]) -> None:
        """Drop every member added after ``mark`` (a batch that failed part-way)."""
        pos, self.members = mark
        self._f.seek(pos)
        self._f.truncate()

    def add(self, name: str, data: bytes) -> tuple[int, int]:
        """Append a member; return ``(offset, size)`` of its data inside the tar."""
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        offset = self._f.tell()
        self._write(data)
        pad = (-len(data)) % _BLOCK
        if pad:
            self._write(b"\0" * pad)
        self.members += 1
        return offset, len(data)

    def close(self) -> Path:
        self._write(b"\0" * (2 * _BLOCK))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)


class ArtifactPack:
    """Images a stage produces for one unit, packed in one tar beside the unit's Parquet file.

    Opened lazily on the first :meth:`add`; :meth:`commit` renames it into place and must happen
    before the unit's Parquet file is committed, so every reference a committed unit holds resolves.
    Each reference carries the digest of its bytes. :meth:`mark` / :meth:`rollback` drop what a
    failed batch added, so a batch retried sample by sample never packs a member twice.
    """

    def __init__(self, out_dir: str | Path, relpath: str):
        self.out_dir = Path(out_dir)
        self.relpath = relpath
        self._writer: TarWriter | None = None
        self.committed = False

    def add(self, member: str, data: bytes) -> BlobRef:
        if self._writer is None:
            self._writer = TarWriter(self.out_dir / self.relpath)
        offset, size = self._writer.add(member, data)
        return BlobRef(path=self.relpath, member=member, offset=offset, size=size, digest=blob_digest(data))

    def mark(self):
        return None if self._writer is None else self._writer.mark()

    def rollback(self, mark) -> None:
        if self._writer is None:
            return
        if mark is None:  # nothing was packed before the batch
            self._writer.abort()
            self._writer = None
        else:
            self._writer.rollback(mark)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.committed = True

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
