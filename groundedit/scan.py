"""Finding the run's input: SA-1B ``sa_*.tar`` shards, folders of ``sa_*.jpg`` + ``sa_*.json``, and
plain image folders, in a stable order, as :class:`SourceEntry` rows grouped into units.

Tars are listed by header (data is skipped with seeks) and never extracted; each entry keeps the
byte range of its member so workers read it directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from groundedit.records import BlobRef, SourceEntry
from groundedit.tario import scan_tar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(name: str) -> str:
    """A WebDataset key from a file stem or relative path: no dots (WebDataset splits on them)."""
    return _UNSAFE_KEY.sub("_", name).strip("_") or "sample"


def _split(name: str) -> tuple[str, str]:
    p = Path(name)
    return str(p.with_suffix("")), p.suffix.lower()


def _entries_from_tar(tar: Path) -> Iterator[SourceEntry]:
    images: dict[str, tuple] = {}
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
            images[stem] = (member.name, ref)
        elif ext == ".json":
            annotations[stem] = (member.name, ref)
    yield from _pair(images, annotations, key_prefix="")


def _pair(images: dict, annotations: dict, key_prefix: str) -> Iterator[SourceEntry]:
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
        name, ref = images[stem]
        yield SourceEntry(
            key=key,
            dataset="sa1b" if ann else "images",
            file_name=name,
            image=ref,
            annotation=ann[1] if ann else None,
        )


def _entries_from_dir(directory: Path, root: Path) -> Iterator[SourceEntry]:
    images: dict[str, tuple] = {}
    annotations: dict[str, tuple] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        stem, ext = _split(path.name)
        if ext in IMAGE_EXTENSIONS:
            images[stem] = (path.name, BlobRef(path=str(path.resolve())))
        elif ext == ".json":
            annotations[stem] = (path.name, BlobRef(path=str(path.resolve())))
    rel = directory.relative_to(root)
    prefix = "" if rel == Path(".") else "_".join(rel.parts) + "_"
    yield from _pair(images, annotations, key_prefix=prefix)


def scan_input(path: Path) -> list[tuple[str, list[SourceEntry]]]:
    """Group the input into ``(group name, entries)``: one group per tar and per folder, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if not path.name.endswith(".tar"):
            raise ValueError(f"input file {path} is not a .tar shard")
        return [(make_key(path.stem), list(_entries_from_tar(path)))]
    groups: list[tuple[str, list[SourceEntry]]] = []
    dirs = [path, *sorted(d for d in path.rglob("*") if d.is_dir())]
    for d in dirs:
        for tar in sorted(d.glob("*.tar")):
            groups.append(
                (make_key(str(tar.relative_to(path).with_suffix(""))), list(_entries_from_tar(tar)))
            )
        entries = list(_entries_from_dir(d, path))
        if entries:
            rel = d.relative_to(path)
            groups.append((make_key("_".join(rel.parts)) if rel.parts else "files", entries))
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
            if e.key in seen and e.error is None:
                e = e.model_copy(
                    update={"error": "duplicate_key", "error_detail": f"key {e.key} seen before"}
                )
                e = e.model_copy(update={"key": make_key(f"{group}-{e.key}")})
            seen.add(e.key)
            checked.append(e)
        for i in range(0, len(checked), unit_size):
            units.append((f"{group}-{i // unit_size:05d}", checked[i : i + unit_size]))
    return units
