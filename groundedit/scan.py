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
    p = Path(name)
    return str(p.with_suffix("")), p.suffix.lower()


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


def _entries_from_dir(directory: Path, root: Path) -> Iterator[SourceEntry]:
    files = sorted(p for p in directory.iterdir() if p.is_file())
    yield from _entries_from_files(files, directory, root)


def scan_input(path: Path) -> list[tuple[str, list[SourceEntry]]]:
    """Group the input into ``(group id, entries)``: one group per tar and per folder, sorted.

    The input is a folder (searched recursively), one tar shard, or one image."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if path.name.endswith(".tar"):
            return [(group_id(path.name), list(_entries_from_tar(path)))]
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return [(ROOT_GROUP, list(_entries_from_files([path], path.parent, path.parent)))]
        raise ValueError(
            f"input file {path} is neither a .tar shard nor an image ({', '.join(IMAGE_EXTENSIONS)})"
        )
    groups: list[tuple[str, list[SourceEntry]]] = []
    dirs = [path, *sorted(d for d in path.rglob("*") if d.is_dir())]
    for d in dirs:
        for tar in sorted(d.glob("*.tar")):
            groups.append((group_id(str(tar.relative_to(path))), list(_entries_from_tar(tar))))
        entries = list(_entries_from_dir(d, path))
        if entries:
            rel = d.relative_to(path)
            groups.append((group_id(str(rel)) if rel.parts else ROOT_GROUP, entries))
    return groups


def plan_units(path: Path, unit_size: int, limit: int | None = None) -> list[tuple[str, list[SourceEntry]]]:
    """Split the input into units of at most ``unit_size`` entries; keep the first ``limit`` entries.
    Duplicate keys (the same stem in two places) get an error entry instead of silently colliding."""
    seen: set[str] = set()
    units: list[tuple[str, list[SourceEntry]]] = []
    remaining = limit
    for group, entries in scan_input(path):
        if remaining is not None:
            entries = entries[: max(remaining, 0)]
            remaining -= len(entries)
        checked = []
        for e in entries:
            if e.key in seen:
                update = {"key": _unseen(make_key(f"{group}-{e.key}"), seen)}
                if e.error is None:
                    update |= {"error": "duplicate_key", "error_detail": f"key {e.key} seen before"}
                e = e.model_copy(update=update)
            seen.add(e.key)
            checked.append(e)
        for i in range(0, len(checked), unit_size):
            units.append((f"{group}-{i // unit_size:05d}", checked[i : i + unit_size]))
    return units


def _unseen(key: str, seen: set[str]) -> str:
    candidate, n = key, 1
    while candidate in seen:
        n += 1
        candidate = f"{key}-{n}"
    return candidate
