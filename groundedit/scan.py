"""Finding the run's input: SA-1B ``sa_*.tar`` shards, folders of ``sa_*.jpg`` + ``sa_*.json``, and
plain image folders, in a stable order, as :class:`SourceEntry` rows grouped into units.

Tars are listed by header (data is skipped with seeks) and never extracted; each entry keeps the
byte range of its member so workers read it directly.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from groundedit.records import BlobRef, SourceEntry
from groundedit.tario import scan_tar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # also the order an annotation pairs in
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]+")
ROOT_GROUP = "@input"  # the input folder's own files; '@' never appears in a quoted path
_MAX_GROUP_CHARS = 160


def make_key(name: str) -> str:
    """A WebDataset key from a file stem or relative path: no dots (WebDataset splits on them)."""
    return _UNSAFE_KEY.sub("_", name).strip("_") or "sample"


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


def _entries_from_tar(tar: Path) -> Iterator[SourceEntry]:
    images: dict[str, list[tuple]] = {}
    annotations: dict[str, tuple] = {}
    for member, unsafe in scan_tar(tar):
        stem, ext = _split(member.name)
        if unsafe:
            yield SourceEntry(
                key=make_key(f"{tar.stem}-{stem}"),
                dataset="images",
                file_name=member.name,
                image=BlobRef(path=str(tar), member=member.name),
                error="unsafe_tar_member",
                error_detail=f"{unsafe}: {member.name!r}",
            )
            continue
        ref = BlobRef(path=str(tar), member=member.name, offset=member.offset, size=member.size)
        if ext in IMAGE_EXTENSIONS:
            images.setdefault(stem, []).append((member.name, ref))
        elif ext == ".json":
            annotations[stem] = (member.name, ref)
    yield from _pair(images, annotations, key_prefix="")


def _by_extension(found: list[tuple]) -> list[tuple]:
    return sorted(found, key=lambda nr: (IMAGE_EXTENSIONS.index(_split(nr[0])[1]), nr[0]))


def _pair(images: dict[str, list[tuple]], annotations: dict, key_prefix: str) -> Iterator[SourceEntry]:
    """Pair images with annotations by stem. Several images may share a stem (``a.jpg`` beside
    ``a.png``): the first by extension order keeps the plain key and any annotation, the others
    get their extension in the key, so each file is its own sample."""
    for stem in sorted(set(images) | set(annotations)):
        ann = annotations.get(stem)
        # SA-1B names are unique across the dataset; plain photos are told apart by their folder.
        key = make_key(Path(stem).name if ann else key_prefix + Path(stem).name)
        if stem not in images:
            name, ref = ann
            yield SourceEntry(
                key=key,
                dataset="sa1b",
                file_name=name,
                image=ref,
                error="image_missing",
                error_detail=f"annotation {name} has no image beside it",
            )
            continue
        (name, ref), *others = _by_extension(images[stem])
        yield SourceEntry(
            key=key,
            dataset="sa1b" if ann else "images",
            file_name=name,
            image=ref,
            annotation=ann[1] if ann else None,
        )
        for name, ref in others:
            yield SourceEntry(
                key=make_key(f"{key_prefix}{Path(stem).name}_{_split(name)[1][1:]}"),
                dataset="images",
                file_name=name,
                image=ref,
            )


def _entries_from_files(files: list[Path], directory: Path, root: Path) -> Iterator[SourceEntry]:
    images: dict[str, list[tuple]] = {}
    annotations: dict[str, tuple] = {}
    for path in files:
        stem, ext = _split(path.name)
        if ext in IMAGE_EXTENSIONS:
            images.setdefault(stem, []).append((path.name, BlobRef(path=str(path.resolve()))))
        elif ext == ".json":
            annotations[stem] = (path.name, BlobRef(path=str(path.resolve())))
    rel = directory.relative_to(root)
    prefix = "" if rel == Path(".") else "_".join(rel.parts) + "_"
    yield from _pair(images, annotations, key_prefix=prefix)


def _entries_from_dir(directory: Path, files: list[str], root: Path) -> Iterator[SourceEntry]:
    yield from _entries_from_files([directory / f for f in sorted(files)], directory, root)


def iter_groups(path: Path) -> Iterator[tuple[str, Iterator[SourceEntry]]]:
    """The input as ``(group id, entries)``, one group per tar and per folder, in a stable order,
    listed lazily: a group is read only when its entries are consumed, so memory holds one group
    (the largest tar or folder), never the whole input.

    The input is a folder (searched recursively, folders in sorted order, each one's tars before
    its own files), one tar shard, or one image."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if path.name.endswith(".tar"):
            yield group_id(path.name), _entries_from_tar(path)
            return
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            yield ROOT_GROUP, _entries_from_files([path], path.parent, path.parent)
            return
        raise ValueError(
            f"input file {path} is neither a .tar shard nor an image ({', '.join(IMAGE_EXTENSIONS)})"
        )
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()  # walk order: sorted, depth first (the order of sorted relative paths)
        d = Path(dirpath)
        for name in sorted(f for f in filenames if f.endswith(".tar")):
            yield group_id(str((d / name).relative_to(path))), _entries_from_tar(d / name)
        rel = d.relative_to(path)
        files = [f for f in filenames if not f.endswith(".tar") and (d / f).is_file()]
        if files:
            yield (group_id(str(rel)) if rel.parts else ROOT_GROUP), _entries_from_dir(d, files, path)


def scan_input(path: Path) -> list[tuple[str, list[SourceEntry]]]:
    """:func:`iter_groups` as a list (tests, small inputs); empty groups left out."""
    groups = [(g, list(entries)) for g, entries in iter_groups(path)]
    return [(g, es) for g, es in groups if es]


class KeyIndex:
    """The sample keys seen so far, on disk (SQLite), so duplicate detection over an SA-1B-sized
    input keeps the driver's memory bounded. ``path=None`` keeps it in memory (small inputs)."""

    def __init__(self, path: Path | None = None):
        import sqlite3

        self._db = sqlite3.connect(str(path) if path else ":memory:")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY)")

    def seen(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key FROM keys WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(k for (k,) in self._db.execute(q, chunk))
        return found

    def add(self, keys: list[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?)", ((k,) for k in keys))

    def close(self) -> None:
        self._db.close()


def _dedupe(group: str, entries: list[SourceEntry], keys: KeyIndex) -> list[SourceEntry]:
    """Entries whose key was seen before (the same stem in two places) get a new key and, unless
    already unusable, a ``duplicate_key`` error instead of silently colliding."""
    seen = keys.seen([e.key for e in entries])
    local: set[str] = set()
    checked = []
    for e in entries:
        if e.key in seen or e.key in local:
            new = make_key(f"{group}-{e.key}")
            candidate, n = new, 1
            while candidate in local or keys.seen([candidate]):
                n += 1
                candidate = f"{new}-{n}"
            update = {"key": candidate}
            if e.error is None:
                update |= {"error": "duplicate_key", "error_detail": f"key {e.key} seen before"}
            e = e.model_copy(update=update)
        local.add(e.key)
        checked.append(e)
    keys.add([e.key for e in checked])
    return checked


def iter_units(
    path: Path, unit_size: int, limit: int | None = None, keys: KeyIndex | None = None
) -> Iterator[tuple[str, list[SourceEntry]]]:
    """Split the input into units of at most ``unit_size`` entries, streaming; stop listing once
    ``limit`` entries are planned. Unit ids are ``<group id>-<chunk number>``."""
    keys = keys or KeyIndex()
    remaining = limit
    for group, entries in iter_groups(path):
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
                yield f"{group}-{n:05d}", _dedupe(group, chunk, keys)
                chunk, n = [], n + 1
            if last:
                break
        if chunk:
            yield f"{group}-{n:05d}", _dedupe(group, chunk, keys)


def plan_units(path: Path, unit_size: int, limit: int | None = None) -> list[tuple[str, list[SourceEntry]]]:
    """:func:`iter_units` as a list (tests, small inputs)."""
    return list(iter_units(path, unit_size, limit))
