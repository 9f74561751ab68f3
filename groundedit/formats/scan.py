"""Finding the run's input: SA-1B ``sa_*.tar`` shards, folders of ``sa_*.jpg`` + ``sa_*.json``, and
plain image folders, in a stable order, as :class:`SourceEntry` rows grouped into units.

Tars are listed by header (data is skipped with seeks) and never extracted; each entry keeps the
byte range of its member so workers read it directly. Run folders inside the input are skipped.
Each entry's key follows :mod:`groundedit.formats.keys`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from groundedit.formats.keys import path_hash, photo_key, sa1b_key
from groundedit.formats.runfolder import is_run_folder
from groundedit.formats.tar import scan_tar
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


def _entries_from_tar(tar: Path, relative: str) -> Iterator[SourceEntry]:
    images: dict[str, list[tuple]] = {}
    annotations: dict[str, tuple] = {}
    readable = relative.removesuffix(".tar")
    for member, unsafe in scan_tar(tar):
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


def _entries_from_dir(directory: Path, files: list[str], root: Path) -> Iterator[SourceEntry]:
    yield from _entries_from_files([directory / f for f in sorted(files)], directory, root)


def iter_groups(path: Path, exclude: Path | None = None) -> Iterator[tuple[str, Iterator[SourceEntry]]]:
    """The input as ``(group id, entries)``, one group per tar and per folder, in a stable order,
    listed lazily: a group is read only when its entries are consumed, so memory holds one group
    (the largest tar or folder), never the whole input.

    The input is a folder (searched recursively, folders in sorted order, each one's tars before
    its own files), one tar shard, or one image. Run folders inside it are skipped, and so is
    ``exclude`` (the run's own folder, which may not be a run folder yet)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if path.name.endswith(".tar"):
            yield group_id(path.name), _entries_from_tar(path, path.name)
            return
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            yield ROOT_GROUP, _entries_from_files([path], path.parent, path.parent)
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
            yield group_id(relative), _entries_from_tar(d / name, relative)
        rel = d.relative_to(path)
        files = [f for f in filenames if not f.endswith(".tar") and (d / f).is_file()]
        if files:
            yield (group_id(str(rel)) if rel.parts else ROOT_GROUP), _entries_from_dir(d, files, path)


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

    def _folder_id(self, folder: str) -> int:
        if self._last_folder is None or self._last_folder[0] != folder:
            self._db.execute("INSERT OR IGNORE INTO folders (path) VALUES (?)", (folder,))
            (fid,) = self._db.execute("SELECT id FROM folders WHERE path = ?", (folder,)).fetchone()
            self._last_folder = (folder, fid)
        return self._last_folder[1]

    def close(self) -> None:
        self._db.close()


def _dedupe(entries: list[SourceEntry], keys: KeyIndex) -> list[SourceEntry]:
    """Entries whose key was seen before (the same SA-1B image in two places, or a file whose plain
    key an SA-1B image holds) get a new key and, unless already unusable, a ``duplicate_key`` error
    naming both files, instead of silently colliding."""
    seen = keys.seen([e.key for e in entries])
    local: dict[str, str] = {}
    checked = []
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
        local[e.key] = where(e)
        checked.append(e)
    keys.add(list(local.items()))
    return checked


def iter_units(
    path: Path,
    unit_size: int,
    limit: int | None = None,
    keys: KeyIndex | None = None,
    exclude: Path | None = None,
) -> Iterator[tuple[str, list[SourceEntry]]]:
    """Split the input into units of at most ``unit_size`` entries, streaming; stop listing once
    ``limit`` entries are planned. Unit ids are ``<group id>-<chunk number>``; ``exclude``: the
    run folder (never read as input)."""
    return chunk_units(iter_groups(path, exclude), unit_size, limit, keys)


def chunk_units(
    groups: Iterator[tuple[str, Iterator[SourceEntry]]],
    unit_size: int,
    limit: int | None = None,
    keys: KeyIndex | None = None,
) -> Iterator[tuple[str, list[SourceEntry]]]:
    """Units of at most ``unit_size`` entries from ``(group id, entries)`` (any reader's), streaming;
    ``limit`` entries at most; duplicate keys flagged through ``keys``."""
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
                yield f"{group}-{n:05d}", _dedupe(chunk, keys)
                chunk, n = [], n + 1
            if last:
                break
        if chunk:
            yield f"{group}-{n:05d}", _dedupe(chunk, keys)


def plan_units(
    path: Path, unit_size: int, limit: int | None = None, exclude: Path | None = None
) -> list[tuple[str, list[SourceEntry]]]:
    """:func:`iter_units` as a list (tests, small inputs)."""
    return list(iter_units(path, unit_size, limit, exclude=exclude))
