"""Finding the run's input: SA-1B ``sa_*.tar`` shards, folders of ``sa_*.jpg`` + ``sa_*.json``, and
plain image folders, in a stable order, as :class:`SourceEntry` rows grouped into units.

Tars are listed by header (data is skipped with seeks) and never extracted; each entry keeps the
byte range of its member so workers read it directly. Run folders inside the input are skipped.
Each entry's key follows :mod:`groundedit.formats.keys`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import xxhash

from groundedit.formats.keys import path_hash, photo_key, sa1b_key
from groundedit.formats.listing import ListedUnit, ListedUnits, TarListings, TarStamp
from groundedit.formats.manifest import digest
from groundedit.formats.runfolder import is_run_folder
from groundedit.formats.tar import TarMember, scan_tar
from groundedit.records import BlobRef, SourceEntry

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # also the order an annotation pairs in
ROOT_GROUP = "@input"  # the input folder's own files; '@' never appears in a quoted path
_MAX_GROUP_CHARS = 160


def group_id(relative: str) -> str:
    """The unit-id prefix of a tar or folder, from its path relative to the input: percent-quoted, so
    two different paths never share an id (``batch.tar`` and ``batch/`` stay apart). Very long
    paths keep a readable head and a digest of the whole ("%~" never occurs in a quoted path)."""
    quoted = quote(os.fsencode(relative), safe="")
    if len(quoted) <= _MAX_GROUP_CHARS:
        return quoted
    return quoted[: _MAX_GROUP_CHARS - 18] + "%~" + hashlib.sha256(quoted.encode()).hexdigest()[:16]


def _split(name: str) -> tuple[str, str]:
    """``(stem with folders, lower-case extension)`` (string operations: called per member)."""
    stem, ext = os.path.splitext(name)
    return stem, ext.lower()


def _entries_from_tar(
    tar: Path, relative: str, members: Iterable[tuple[TarMember, str | None]] | None = None
) -> Iterator[SourceEntry]:
    """The entries of a tar, from its headers or from its ``members`` table listed before."""
    images: dict[str, list[tuple]] = {}
    annotations: dict[str, tuple] = {}
    readable = relative.removesuffix(".tar")
    for member, unsafe in scan_tar(tar) if members is None else members:
        stem, ext = _split(member.name)
        if unsafe:
            yield SourceEntry(
                key=photo_key(f"{readable}/{member.name}", f"{relative}/{member.name}"),
                dataset="images",
                file_name=member.name,
                image=BlobRef(path=str(tar), member=member.name),
                error="unsafe_tar_member",
                error_detail=f"{unsafe}: {member.name!r}",
            )
            continue
        ref = BlobRef(path=str(tar), member=member.name, offset=member.offset, size=member.size)
        if ext in IMAGE_EXTENSIONS:
            key = photo_key(f"{readable}/{member.name}", f"{relative}/{member.name}")
            images.setdefault(stem, []).append((member.name, ref, key))
        elif ext == ".json":
            annotations[stem] = (member.name, ref)
    yield from _pair(images, annotations)


def _by_extension(found: list[tuple]) -> list[tuple]:
    return sorted(found, key=lambda f: (IMAGE_EXTENSIONS.index(_split(f[0])[1]), f[0]))


def _pair(images: dict[str, list[tuple]], annotations: dict) -> Iterator[SourceEntry]:
    """Pair images ``(name, ref, photo key)`` with annotations by stem. An annotated image is an
    SA-1B image and named by its file name; when several images share the annotation's stem
    (``a.jpg`` beside ``a.png``), the first by extension order takes it, and every other image is
    a photo of its own."""
    for stem in sorted(set(images) | set(annotations)):
        ann = annotations.get(stem)
        found = _by_extension(images.get(stem, []))
        if ann is not None and not found:
            name, ref = ann
            yield SourceEntry(
                key=sa1b_key(stem),
                dataset="sa1b",
                file_name=name,
                image=ref,
                error="image_missing",
                error_detail=f"annotation {name} has no image beside it",
            )
            continue
        if ann is not None:
            (name, ref, _), *found = found
            yield SourceEntry(
                key=sa1b_key(stem), dataset="sa1b", file_name=name, image=ref, annotation=ann[1]
            )
        for name, ref, key in found:
            yield SourceEntry(key=key, dataset="images", file_name=name, image=ref)


def _entries_from_files(files: list[Path], directory: Path, root: Path) -> Iterator[SourceEntry]:
    images: dict[str, list[tuple]] = {}
    annotations: dict[str, tuple] = {}
    rel = directory.relative_to(root)
    prefix = "" if rel == Path(".") else rel.as_posix() + "/"
    for path in files:
        stem, ext = _split(path.name)
        if ext in IMAGE_EXTENSIONS:
            ref = BlobRef(path=str(path.resolve()))
            images.setdefault(stem, []).append(
                (path.name, ref, photo_key(prefix + path.name, prefix + path.name))
            )
        elif ext == ".json":
            annotations[stem] = (path.name, BlobRef(path=str(path.resolve())))
    yield from _pair(images, annotations)


def _entries_from_dir(files: list[str], directory: Path, root: Path) -> Iterator[SourceEntry]:
    yield from _entries_from_files([directory / f for f in sorted(files)], directory, root)


@dataclass(frozen=True)
class Group:
    """One tar or folder of the input: its unit-id prefix and how to list its entries."""

    id: str
    tar: Path | None  # a tar group's file (None: a folder's own files)
    relative: str  # the tar's path relative to the input
    _files: tuple[Path, list[str], Path] | None = None  # a folder group: (folder, file names, root)

    def entries(self, members: Iterable[tuple[TarMember, str | None]] | None = None) -> Iterator[SourceEntry]:
        """The group's entries, lazily (a tar's from ``members`` when its table was listed before)."""
        if self.tar is not None:
            return _entries_from_tar(self.tar, self.relative, members)
        return _entries_from_dir(*self._files)


def iter_groups(path: Path, exclude: Path | None = None) -> Iterator[tuple[str, Iterator[SourceEntry]]]:
    """The input as ``(group id, entries)``, one group per tar and per folder, in a stable order,
    listed lazily: a group is read only when its entries are consumed, so memory holds one group
    (the largest tar or folder), never the whole input.

    The input is a folder (searched recursively, folders in sorted order, each one's tars before
    its own files), one tar shard, or one image. Run folders inside it are skipped, and so is
    ``exclude`` (the run's own folder, which may not be a run folder yet)."""
    for g in _groups(path, exclude):
        yield g.id, g.entries()


def _groups(path: Path, exclude: Path | None = None) -> Iterator[Group]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if path.name.endswith(".tar"):
            yield Group(group_id(path.name), path, path.name)
            return
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            yield Group(ROOT_GROUP, None, "", ([path.name], path.parent, path.parent))
            return
        raise ValueError(
            f"input file {path} is neither a .tar shard nor an image ({', '.join(IMAGE_EXTENSIONS)})"
        )
    skip = exclude.resolve() if exclude is not None else None
    if path.resolve() == skip:
        raise ValueError(f"the input {path} is the run folder itself: give --out another folder")
    if is_run_folder(path):
        raise ValueError(f"the input {path} is a groundedit run folder: its outputs are not input")
    for dirpath, dirnames, filenames in os.walk(path):
        d = Path(dirpath)
        # walk order: sorted, depth first (the order of sorted relative paths)
        dirnames[:] = sorted(n for n in dirnames if not _skipped(d / n, skip))
        for name in sorted(f for f in filenames if f.endswith(".tar")):
            relative = (d / name).relative_to(path).as_posix()
            yield Group(group_id(relative), d / name, relative)
        rel = d.relative_to(path)
        files = [f for f in filenames if not f.endswith(".tar") and (d / f).is_file()]
        if files:
            yield Group(group_id(str(rel)) if rel.parts else ROOT_GROUP, None, "", (files, d, path))


def _skipped(folder: Path, run_out: Path | None) -> bool:
    return is_run_folder(folder) or (run_out is not None and folder.resolve() == run_out)


def scan_input(path: Path, exclude: Path | None = None) -> list[tuple[str, list[SourceEntry]]]:
    """:func:`iter_groups` as a list (tests, small inputs); empty groups left out."""
    groups = [(g, list(entries)) for g, entries in iter_groups(path, exclude)]
    return [(g, es) for g, es in groups if es]


def where(entry: SourceEntry) -> str:
    """Where an entry's image is, for messages: its path, or ``<tar path>/<member>``; for a pair in a
    table, its origin (file and row)."""
    if entry.pair is not None and entry.pair.source_cell is not None:
        return f"{entry.pair.source_cell.path}/{entry.pair.origin}"
    ref = entry.image
    return ref.path if ref.member is None else f"{ref.path}/{ref.member}"


class KeyIndex:
    """The sample keys seen so far with the file each one names, on disk (SQLite), so duplicate
    detection over an SA-1B-sized input keeps the driver's memory bounded (folders and tars are
    stored once). ``path=None`` keeps it in memory (small inputs)."""

    def __init__(self, path: Path | None = None):
        import sqlite3

        self._db = sqlite3.connect(str(path) if path else ":memory:")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS folders (id INTEGER PRIMARY KEY, path TEXT UNIQUE)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, folder INTEGER, name TEXT) WITHOUT ROWID"
        )
        self._last_folder: tuple[str, int] | None = None

    def seen(self, keys: list[str]) -> dict[str, str]:
        """The keys of ``keys`` seen before, each with where its file is."""
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = (
                "SELECT k.key, f.path, k.name FROM keys k JOIN folders f ON f.id = k.folder "
                f"WHERE k.key IN ({','.join('?' * len(chunk))})"
            )
            found.update((k, f"{folder}/{name}") for k, folder, name in self._db.execute(q, chunk))
        return found

    def add(self, keys: list[tuple[str, str]]) -> None:
        """Record ``(key, where its file is)`` pairs (a key seen before keeps its first file)."""
        rows = []
        for key, place in keys:
            folder, _, name = place.rpartition("/")
            rows.append((key, self._folder_id(folder), name))
        self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", rows)

    def add_columns(self, keys: list[str], folders: list[str], names: list[str]) -> None:
        """Record keys with the folder and name of each one's file (a listed group's, at C speed)."""
        ids = {f: self._folder_id(f) for f in dict.fromkeys(folders)}
        self._db.executemany(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?)",
            zip(keys, map(ids.__getitem__, folders), names, strict=True),
        )

    def claim(self, keys: list[str], folders: list[str], names: list[str]) -> bool:
        """Record keys (with the folder and name of each one's file) if none of them was seen
        before, and say whether they were recorded: a group listed before adds its keys at C speed."""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT 1 FROM keys WHERE key IN ({','.join('?' * len(chunk))}) LIMIT 1"
            if self._db.execute(q, chunk).fetchone() is not None:
                return False
        self.add_columns(keys, folders, names)
        return True

    def _folder_id(self, folder: str) -> int:
        if self._last_folder is None or self._last_folder[0] != folder:
            self._db.execute("INSERT OR IGNORE INTO folders (path) VALUES (?)", (folder,))
            (fid,) = self._db.execute("SELECT id FROM folders WHERE path = ?", (folder,)).fetchone()
            self._last_folder = (folder, fid)
        return self._last_folder[1]

    def close(self) -> None:
        self._db.close()


def _dedupe(entries: list[SourceEntry], keys: KeyIndex) -> tuple[list[SourceEntry], bool]:
    """Entries whose key was seen before (the same SA-1B image in two places, or a file whose plain
    key an SA-1B image holds) get a new key and, unless already unusable, a ``duplicate_key`` error
    naming both files, instead of silently colliding. Returns the entries and whether any changed."""
    seen = keys.seen([e.key for e in entries])
    local: dict[str, str] = {}
    checked = []
    changed = False
    for e in entries:
        first = seen.get(e.key) or local.get(e.key)
        if first is not None:
            # "~" then a hash of this file's place: no plain key has that form
            new = f"{e.key}~{path_hash(where(e))}"
            candidate, n = new, 1
            while candidate in local or keys.seen([candidate]):
                n += 1
                candidate = f"{new}-{n}"
            update = {"key": candidate}
            if e.error is None:
                detail = f"key {e.key} is already {first}; this file is {where(e)}"
                update |= {"error": "duplicate_key", "error_detail": detail}
            e = e.model_copy(update=update)
            changed = True
        local[e.key] = where(e)
        checked.append(e)
    keys.add(list(local.items()))
    return checked, changed


def unit_fingerprint(entries: list[SourceEntry]) -> str:
    """Content fingerprint of a source unit: its entries, which carry the member table of tar
    members and (once planning stamped them) the size + digest of loose files."""
    return digest([e.model_dump() for e in entries])


@dataclass
class PlannedUnit:
    """A unit as listing plans it: its id and size, and for a tar's unit its content fingerprint.
    A unit from a cached listing (:mod:`groundedit.formats.listing`) has no entries until asked for
    them (:meth:`entries` then derives its tar's units from the cached member table)."""

    unit: str
    rows: int
    fingerprint: str | None = None  # tar units; a folder's is known once its files are stamped
    loaded: list[SourceEntry] | None = None
    load: Callable[[], list[SourceEntry]] | None = None

    def entries(self) -> list[SourceEntry]:
        if self.loaded is None:
            self.loaded = self.load()
        return self.loaded


def iter_planned(
    path: Path,
    unit_size: int,
    limit: int | None = None,
    keys: KeyIndex | None = None,
    exclude: Path | None = None,
    listings: TarListings | None = None,
) -> Iterator[PlannedUnit]:
    """Split the input into units of at most ``unit_size`` entries, streaming; stop listing once
    ``limit`` entries are planned. Unit ids are ``<group id>-<chunk number>``; ``exclude``: the
    run folder (never read as input).

    Duplicate keys are resolved in two steps: within a tar or folder (so a tar's units depend on
    the tar alone), then against the keys of earlier groups (``keys``). With ``listings``, a tar
    whose stat is unchanged is not read: its units come from its listing (:mod:`.listing`) unless
    one of its keys was planned in an earlier group (then from its cached member table). A tar
    listed after the same groups as last time, with no key of theirs, skips even the key lookups
    (its keys go into ``keys`` only once some later group needs them). A tar read anew gets its
    listing written once its last unit has been taken."""
    keys = keys or KeyIndex()
    remaining = [limit]
    visited: set[str] = set()
    prefix = ""  # identity of the groups planned so far
    pending: list[ListedUnits] = []  # listed groups whose keys ``keys`` does not hold yet

    def settle() -> None:
        for listed in pending:
            keys.add_columns(*listed.columns())
        pending.clear()

    for group in _groups(path, exclude):
        if remaining[0] is not None and remaining[0] <= 0:
            return
        if group.tar is None or listings is None:
            settle()
            record = _GroupRecord(prefix)
            yield from _plan_group(group, group.entries(), unit_size, remaining, keys, record)
            prefix = _chain(prefix, group.id, record.identity.hexdigest())
            continue
        stamp = TarStamp.of(group.tar)
        visited.add(stamp.path)
        known = listings.units(stamp, group.relative, unit_size)
        if known is not None and remaining[0] is not None and known.rows > remaining[0]:
            known = None  # --limit cuts this tar: its last unit is not the listed one
        if known is not None and known.alone and known.prefix == prefix:
            pending.append(known)
        elif known is not None:
            settle()
            if not keys.claim(*known.columns()):
                known = None
        if known is not None:
            derive = _Derived(group, stamp, listings, unit_size)
            for i, u in enumerate(known.units):
                yield PlannedUnit(
                    u.unit, u.rows, u.fingerprint, load=functools.partial(derive.unit, i, u.unit)
                )
            if remaining[0] is not None:
                remaining[0] -= known.rows
            prefix = _chain(prefix, stamp, group.relative, unit_size, known.rows)
            continue
        settle()
        members = listings.members(stamp)
        scanned = members is None
        if scanned:
            members = list(scan_tar(group.tar))
        record = _GroupRecord(prefix)
        yield from _plan_group(group, group.entries(members), unit_size, remaining, keys, record)
        # the last unit was taken: write the listing now (planning holds the run lock by then)
        if scanned:
            listings.save_members(stamp, members)
        if not record.cut:
            listings.save_units(stamp, group.relative, unit_size, record.listed)
        prefix = _chain(prefix, stamp, group.relative, unit_size, record.listed.rows)
    if listings is not None:
        listings.prune(visited)


def _chain(prefix: str, *group: object) -> str:
    """The identity of the groups planned so far, extended by one group's."""
    return xxhash.xxh3_128_hexdigest(repr((prefix, group)).encode("utf-8", "surrogateescape"))


class _GroupRecord:
    """What planning one group leaves behind: its units as a listing keeps them (tars), and a
    digest of the keys it added with their files (a folder's identity for the groups after it)."""

    def __init__(self, prefix: str):
        self.listed = ListedUnits([], prefix, alone=True)
        self.identity = xxhash.xxh3_128()
        self.cut = False  # --limit stopped inside the group: its units are not the tar's


def _plan_group(
    group: Group,
    entries: Iterable[SourceEntry],
    unit_size: int,
    remaining: list[int | None],
    keys: KeyIndex,
    record: _GroupRecord | None = None,
) -> Iterator[PlannedUnit]:
    """The units of one group, its duplicate keys resolved within the group, then against ``keys``."""
    own = KeyIndex()  # the group's keys: duplicates within the group first
    chunk: list[SourceEntry] = []
    n = 0

    def unit() -> PlannedUnit:
        alone, _ = _dedupe(chunk, own)
        final, changed = _dedupe(alone, keys)
        uid = f"{group.id}-{n:05d}"
        fp = None
        if record is not None and group.tar is None:
            for e in final:
                record.identity.update(f"{e.key}\0{where(e)}\0".encode("utf-8", "surrogateescape"))
        if group.tar is not None:
            fp = unit_fingerprint(alone)
            if record is not None:
                listed = record.listed
                listed.units.append(ListedUnit(uid, len(alone), fp))
                listed.alone = listed.alone and not changed
                for e in alone:
                    folder, _, name = where(e).rpartition("/")
                    listed.keys.append(e.key)
                    listed.folders.append(folder)
                    listed.names.append(name)
            if changed:
                fp = unit_fingerprint(final)
        return PlannedUnit(uid, len(final), fp, loaded=final)

    for e in entries:
        chunk.append(e)
        if remaining[0] is not None:
            remaining[0] -= 1
        full, last = len(chunk) == unit_size, remaining[0] is not None and remaining[0] <= 0
        if full or last:
            yield unit()
            chunk, n = [], n + 1
        if last:
            if record is not None:
                record.cut = True
            own.close()
            return
    if chunk:
        yield unit()
    own.close()


class _Derived:
    """A cached tar's units with their entries, derived from its cached member table on first
    use (a unit the source stage must redo needs its entries in the plan)."""

    def __init__(self, group: Group, stamp: TarStamp, listings: TarListings, unit_size: int):
        self.group, self.stamp, self.listings, self.unit_size = group, stamp, listings, unit_size
        self._units: list[PlannedUnit] | None = None

    def unit(self, i: int, uid: str) -> list[SourceEntry]:
        if self._units is None:
            members = self.listings.members(self.stamp)
            if members is None:
                members = list(scan_tar(self.group.tar))
            # its keys were claimed as new to this planning: deriving it alone gives its final keys
            self._units = list(
                _plan_group(self.group, self.group.entries(members), self.unit_size, [None], KeyIndex())
            )
        planned = self._units[i] if i < len(self._units) else None
        if planned is None or planned.unit != uid:
            raise RuntimeError(
                f"the listing of {self.group.tar} no longer matches it (unit {uid}); plan again"
            )
        return planned.entries()


def iter_units(
    path: Path,
    unit_size: int,
    limit: int | None = None,
    keys: KeyIndex | None = None,
    exclude: Path | None = None,
) -> Iterator[tuple[str, list[SourceEntry]]]:
    """:func:`iter_planned` as ``(unit id, entries)``, without listings."""
    for u in iter_planned(path, unit_size, limit, keys, exclude):
        yield u.unit, u.entries()


def chunk_units(
    groups: Iterator[tuple[str, Iterator[SourceEntry]]],
    unit_size: int,
    limit: int | None = None,
    keys: KeyIndex | None = None,
) -> Iterator[tuple[str, list[SourceEntry]]]:
    """Units of at most ``unit_size`` entries from ``(group id, entries)`` (any reader's), streaming;
    ``limit`` entries at most; duplicate keys flagged through ``keys``. No listing cache: readers
    other than photos (edit pairs) are planned in full each time."""
    keys = keys or KeyIndex()
    remaining = limit
    for group, entries in groups:
        if remaining is not None and remaining <= 0:
            return
        chunk: list[SourceEntry] = []
        n = 0
        for e in entries:
            chunk.append(e)
            if remaining is not None:
                remaining -= 1
            full, last = len(chunk) == unit_size, remaining is not None and remaining <= 0
            if full or last:
                yield f"{group}-{n:05d}", _dedupe(chunk, keys)[0]
                chunk, n = [], n + 1
            if last:
                break
        if chunk:
            yield f"{group}-{n:05d}", _dedupe(chunk, keys)[0]


def plan_units(
    path: Path, unit_size: int, limit: int | None = None, exclude: Path | None = None
) -> list[tuple[str, list[SourceEntry]]]:
    """:func:`iter_units` as a list (tests, small inputs)."""
    return list(iter_units(path, unit_size, limit, exclude=exclude))
