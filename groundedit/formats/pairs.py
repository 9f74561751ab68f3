"""Reading edit pairs: one reader per ``--input-kind``, each listing ``(group id, entries)`` lazily,
as :func:`groundedit.formats.scan.iter_groups` does for photos, so the same unit splitting, ``--limit``
and duplicate-key index apply.

Kinds (``guess_kind`` picks one from the input when none is named):

- ``jsonl`` — a manifest, one ``{"id", "source", "target", "instruction"}`` object per line, paths
  relative to the manifest (``id`` optional; other keys ignored). Read line by line.
- ``bagel-parquet`` — Bagel's edit parquet (``image_list`` / ``instruction_list``, ours or the
  official layout): each consecutive pair of images in a row is one pair, with the first phrasing of
  its step's instructions. Only ``instruction_list`` is read while planning.
- ``hf`` — a Hugging Face dataset: its Parquet files, or a folder written by ``save_to_disk`` (Arrow
  files, a ``DatasetDict``'s splits too). Columns come from ``--columns`` or from defaults for
  MagicBrush- and OmniEdit-style names; an image column holds ``{"bytes", "path"}`` structs (as
  ``datasets`` writes them), bytes, or paths; an instruction column a string or a list of phrasings
  (the first is taken). Only the non-image columns are read while planning.
- ``shards`` — our own WebDataset shards (``src.jpg`` → ``edited.jpg`` with the record's original
  instruction), to annotate them again. Tars are listed by header; the small ``json`` members are read.

Images in a table are not addressable by byte range (Parquet pages are compressed), so an entry
points at its *cell* and at its row group; the source stage reads the row group once per unit and
copies the two images into its artifact tar, after which every stage reads them by offset like any
tar member. A row group's (offset, size) is its identity in the fingerprint, as a tar's member table
is; the copied bytes get digests when they are written. A pair that cannot be used carries an
``error`` (a bad manifest line, a missing file, no instruction) and is rejected by the source stage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from groundedit.formats.bagel_parquet import IMAGE_LIST, INSTRUCTION_LIST
from groundedit.formats.keys import sample_key
from groundedit.formats.runfolder import RunFolder, is_run_folder
from groundedit.formats.scan import group_id
from groundedit.formats.tar import scan_tar
from groundedit.records import PAIR_KINDS, BlobRef, Cell, PairEntry, SourceEntry

ROLES = ("source", "target", "instruction", "id")
# Column names of the public edit sets (DESIGN §6), tried in this order when --columns names none.
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "magicbrush": {"source": "source_img", "target": "target_img", "instruction": "instruction"},
    "omniedit": {"source": "src_img", "target": "edited_img", "instruction": "edited_prompt_list"},
    "generic": {"source": "source", "target": "target", "instruction": "instruction"},
}
_ID_COLUMNS = ("id", "omni_edit_id", "img_id")  # a row's id, when --columns names none
_SHARD_MEMBERS = ("src.jpg", "edited.jpg", "json")


class PairInputError(ValueError):
    """The input is not of the kind asked for (or none can be guessed); the message says why."""


def parse_columns(spec: str | None) -> dict[str, str]:
    """``source=src_img,target=edited_img,instruction=...`` as a mapping (roles checked)."""
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        role, eq, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not eq or not column:
            raise PairInputError(f"--columns: {part!r} is not ROLE=COLUMN")
        if role not in ROLES:
            raise PairInputError(f"--columns: unknown role {role!r} (roles: {', '.join(ROLES)})")
        out[role] = column
    return out


def _tables(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".arrow") and p.is_file())


def guess_kind(path: Path) -> str:
    """The kind of a pairs input, from its files: a ``.jsonl`` manifest (or a folder holding exactly
    one), a folder ``save_to_disk`` wrote, Parquet with Bagel's two columns, other Parquet, tars."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".jsonl":
            return "jsonl"
        if path.suffix == ".tar":
            return "shards"
        if path.suffix in (".parquet", ".arrow"):
            return _table_kind(path)
        raise PairInputError(f"cannot tell what kind of pairs input {path} is: name it with --input-kind")
    manifests = sorted(path.glob("*.jsonl"))
    if len(manifests) == 1:
        return "jsonl"
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "hf"
    tables = _tables(path)
    if tables:
        return _table_kind(tables[0])
    if any(path.glob("*.tar")) or RunFolder(path).shards.is_dir():
        return "shards"
    raise PairInputError(
        f"cannot tell what kind of pairs input {path} is (no .jsonl manifest, Parquet, Arrow or "
        f"shards found): name it with --input-kind ({', '.join(PAIR_KINDS)})"
    )


def _table_kind(path: Path) -> str:
    names = set(_schema(path).names)
    return "bagel-parquet" if {IMAGE_LIST, INSTRUCTION_LIST} <= names else "hf"


def _schema(path: Path) -> pa.Schema:
    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_stream(source).schema
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise PairInputError(f"{path}: not a readable {path.suffix[1:]} file ({e})") from e


def iter_pair_groups(
    path: Path, kind: str, columns: dict[str, str] | None = None, exclude: Path | None = None
) -> Iterator[tuple[str, Iterator[SourceEntry]]]:
    """The pairs at ``path`` as ``(group id, entries)``, one group per manifest, table file or tar."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if kind != "shards" and path.is_dir() and is_run_folder(path):
        raise PairInputError(f"the input {path} is a groundedit run folder: use --input-kind shards")
    if kind == "jsonl":
        manifests = [path] if path.is_file() else sorted(path.glob("*.jsonl"))
        if not manifests:
            raise PairInputError(f"no .jsonl manifest in {path}")
        root = path.parent if path.is_file() else path
        for m in manifests:
            yield group_id(m.relative_to(root).as_posix()), _jsonl_entries(m, root)
    elif kind == "bagel-parquet":
        root = path.parent if path.is_file() else path
        for f in _tables(path):
            yield group_id(f.relative_to(root).as_posix()), _bagel_entries(f, root)
    elif kind == "hf":
        root = path.parent if path.is_file() else path
        files = _tables(path)
        if not files:
            raise PairInputError(f"no Parquet or Arrow files in {path}")
        mapping = _resolve_columns(files[0], columns or {})
        for f in files:
            yield group_id(f.relative_to(root).as_posix()), _table_entries(f, root, mapping)
    elif kind == "shards":
        root = path.parent if path.is_file() else path
        run_shards = RunFolder(path).shards
        folder = run_shards if path.is_dir() and run_shards.is_dir() else path
        tars = [path] if path.is_file() else sorted(folder.glob("*.tar"))
        skip = exclude.resolve() if exclude is not None else None
        for t in tars:
            if skip is not None and t.resolve().is_relative_to(skip):
                continue
            yield group_id(t.relative_to(root).as_posix()), _shard_entries(t, root)
    else:
        raise PairInputError(f"unknown input kind {kind!r} (choose from: {', '.join(PAIR_KINDS)})")


def _key(text: str, identity: str) -> str:
    return sample_key(text, identity)


def _error_entry(key: str, origin: str, where: str, reason: str, detail: str) -> SourceEntry:
    ref = BlobRef(path=where)
    return SourceEntry(
        key=key,
        dataset="pairs",
        file_name=os.path.basename(where),
        image=ref,
        pair=PairEntry(kind="jsonl", origin=origin, target=ref),
        error=reason,
        error_detail=detail,
    )


# --- JSONL manifests -----------------------------------------------------------------------------


def _jsonl_entries(manifest: Path, root: Path) -> Iterator[SourceEntry]:
    rel = manifest.relative_to(root).as_posix()
    stem = manifest.stem
    with open(manifest, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            origin = f"{rel}:{n}"
            key = _key(f"{stem}_{n:06d}", origin)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield _error_entry(key, origin, str(manifest), "bad_manifest_line", f"line {n}: {e}")
                continue
            if not isinstance(row, dict):
                yield _error_entry(
                    key, origin, str(manifest), "bad_manifest_line", f"line {n}: not an object"
                )
                continue
            if row.get("id") not in (None, ""):
                key = _key(str(row["id"]), origin)
            missing = [r for r in ("source", "target") if not isinstance(row.get(r), str) or not row[r]]
            if missing:
                detail = f"line {n}: no {' or '.join(missing)} path"
                yield _error_entry(key, origin, str(manifest), "bad_manifest_line", detail)
                continue
            src, tgt = (manifest.parent / row["source"]), (manifest.parent / row["target"])
            entry = SourceEntry(
                key=key,
                dataset="pairs",
                file_name=row["source"],
                image=BlobRef(path=str(src.resolve())),
                pair=PairEntry(
                    kind="jsonl",
                    origin=origin,
                    target=BlobRef(path=str(tgt.resolve())),
                    instruction=_instruction(row.get("instruction")),
                ),
            )
            gone = [p for p in (src, tgt) if not p.is_file()]
            if gone:
                entry.error, entry.error_detail = "image_missing", f"line {n}: {gone[0]} does not exist"
            yield _checked_instruction(entry)


def _instruction(value) -> str | None:
    """The instruction of a cell: a string, or the first non-empty string of a list of phrasings."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list | tuple):
        for v in value:
            if isinstance(v, str) and v.strip():
                return v.strip()
    return None


def _checked_instruction(entry: SourceEntry) -> SourceEntry:
    if entry.error is None and entry.pair.instruction is None:
        entry.error, entry.error_detail = (
            "no_instruction",
            f"{entry.pair.origin}: the pair has no instruction",
        )
    return entry


# --- tables: Bagel parquet, HF Parquet and Arrow ------------------------------------------------


def _text_columns(path: Path, wanted: list[str]) -> Iterator[tuple[int, list[dict], BlobRef]]:
    """Each group's rows with only ``wanted`` columns (Parquet reads only those; Arrow is mapped)."""
    if path.suffix == ".arrow":  # record batches are its groups; its size stands for their identity
        size = path.stat().st_size
        with pa.memory_map(str(path)) as source:
            for g, batch in enumerate(pa.ipc.open_stream(source)):
                ref = BlobRef(path=str(path), member=f"batch/{g}", size=size)
                yield g, pa.Table.from_batches([batch]).select(wanted).to_pylist(), ref
        return
    pf = pq.ParquetFile(path)
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        first = rg.column(0)
        offset = first.dictionary_page_offset or first.data_page_offset
        ref = BlobRef(path=str(path), member=f"row_group/{g}", offset=offset, size=rg.total_byte_size)
        yield g, pf.read_row_group(g, columns=wanted).to_pylist(), ref


def _bagel_entries(path: Path, root: Path) -> Iterator[SourceEntry]:
    rel = path.relative_to(root).as_posix()
    stem = path.stem
    if not {IMAGE_LIST, INSTRUCTION_LIST} <= set(_schema(path).names):
        raise PairInputError(
            f"{path}: a Bagel edit parquet needs columns {IMAGE_LIST} and {INSTRUCTION_LIST}"
        )
    index = 0
    for g, rows, ref in _text_columns(path, [INSTRUCTION_LIST]):
        for r, row in enumerate(rows):
            steps = row[INSTRUCTION_LIST] or []
            for step, phrasings in enumerate(steps):
                origin = f"{rel}: row {index}, step {step}"
                entry = SourceEntry(
                    key=_key(f"{stem}_{index:06d}_{step:02d}", origin),
                    dataset="pairs",
                    file_name=f"{rel}#{index}/{step}",
                    image=ref,
                    pair=PairEntry(
                        kind="bagel-parquet",
                        origin=origin,
                        target=ref,
                        instruction=_instruction(phrasings),
                        source_cell=Cell(path=str(path), row_group=g, row=r, column=IMAGE_LIST, item=step),
                        target_cell=Cell(
                            path=str(path), row_group=g, row=r, column=IMAGE_LIST, item=step + 1
                        ),
                    ),
                )
                yield _checked_instruction(entry)
            if not steps:
                origin = f"{rel}: row {index}"
                yield SourceEntry(
                    key=_key(f"{stem}_{index:06d}", origin),
                    dataset="pairs",
                    file_name=f"{rel}#{index}",
                    image=ref,
                    pair=PairEntry(kind="bagel-parquet", origin=origin, target=ref),
                    error="no_instruction",
                    error_detail=f"{origin}: {INSTRUCTION_LIST} is empty",
                )
            index += 1


def _resolve_columns(path: Path, asked: dict[str, str]) -> dict[str, str]:
    """The column of each role: what ``--columns`` names, else the first default set that fits."""
    names = _schema(path).names
    mapping = dict(asked)
    if not {"source", "target", "instruction"} <= set(mapping):
        for defaults in DEFAULT_COLUMNS.values():
            if all(mapping.get(role, col) in names for role, col in defaults.items()):
                mapping = {**defaults, **mapping}
                break
    if "id" not in mapping:
        mapping["id"] = next((c for c in _ID_COLUMNS if c in names), "")
    roles = ("source", "target", "instruction")
    missing = [f"{r}={mapping[r]}" if r in mapping else r for r in roles if mapping.get(r) not in names]
    if missing:
        raise PairInputError(
            f"{path}: no column for {', '.join(missing)} (columns: {', '.join(names)}); "
            "name them with --columns source=...,target=...,instruction=..."
        )
    return mapping


def _table_entries(path: Path, root: Path, mapping: dict[str, str]) -> Iterator[SourceEntry]:
    rel = path.relative_to(root).as_posix()
    stem = path.stem
    names = _schema(path).names
    for role in ("source", "target", "instruction"):
        if mapping[role] not in names:
            raise PairInputError(f"{path}: no column {mapping[role]!r} ({role}); columns: {', '.join(names)}")
    wanted = [mapping["instruction"]] + ([mapping["id"]] if mapping.get("id") in names else [])
    index = 0
    for g, rows, ref in _text_columns(path, wanted):
        for r, row in enumerate(rows):
            origin = f"{rel}: row {index}"
            ident = row.get(mapping.get("id") or "")
            text = str(ident) if ident not in (None, "") else f"{stem}_{index:06d}"
            entry = SourceEntry(
                key=_key(text, origin),
                dataset="pairs",
                file_name=f"{rel}#{index}",
                image=ref,
                pair=PairEntry(
                    kind="hf",
                    origin=origin,
                    target=ref,
                    instruction=_instruction(row[mapping["instruction"]]),
                    source_cell=Cell(path=str(path), row_group=g, row=r, column=mapping["source"]),
                    target_cell=Cell(path=str(path), row_group=g, row=r, column=mapping["target"]),
                ),
            )
            yield _checked_instruction(entry)
            index += 1


def read_cells(cells: list[Cell]) -> dict[Cell, object]:
    """The values of ``cells``, reading each row group they touch once (only their columns)."""
    groups: dict[tuple[str, int], set[str]] = {}
    for c in cells:
        groups.setdefault((c.path, c.row_group), set()).add(c.column)
    tables: dict[tuple[str, int], pa.Table] = {}
    for (path, g), cols in groups.items():
        if path.endswith(".arrow"):
            with pa.memory_map(path) as source:
                for i, batch in enumerate(pa.ipc.open_stream(source)):
                    if i == g:
                        tables[(path, g)] = pa.Table.from_batches([batch]).select(sorted(cols))
                        break
        else:
            tables[(path, g)] = pq.ParquetFile(path).read_row_group(g, columns=sorted(cols))
    out = {}
    for c in cells:
        table = tables.get((c.path, c.row_group))
        if table is None or c.row >= table.num_rows:
            raise KeyError(f"{c.path}: row group {c.row_group} has no row {c.row}")
        value = table.column(c.column)[c.row].as_py()
        if c.item is not None:
            value = value[c.item] if isinstance(value, list) and c.item < len(value) else None
        out[c] = value
    return out


def cell_bytes(value, table_path: str) -> bytes:
    """The image bytes of a cell value: ``{"bytes", "path"}`` (bytes, else the path beside the
    table), raw bytes, or a path. Raises ``FileNotFoundError`` / ``ValueError`` when there are none."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, bytes | bytearray) and value:
        return bytes(value)
    if isinstance(value, str) and value:
        p = Path(value)
        p = p if p.is_absolute() else Path(table_path).parent / p
        return p.read_bytes()
    raise ValueError("the cell holds no image")


# --- our own shards -------------------------------------------------------------------------------


def _shard_entries(tar: Path, root: Path) -> Iterator[SourceEntry]:
    from groundedit.formats.tar import read_blob

    rel = tar.relative_to(root).as_posix()
    samples: dict[str, dict[str, BlobRef]] = {}
    for member, unsafe in scan_tar(tar):
        key, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
        if unsafe or ext not in _SHARD_MEMBERS:
            continue
        ref = BlobRef(path=str(tar), member=member.name, offset=member.offset, size=member.size)
        samples.setdefault(key, {})[ext] = ref
    for key, members in samples.items():
        origin = f"{rel}: {key}"
        src, tgt = members.get("src.jpg"), members.get("edited.jpg")
        any_ref = src or tgt or members["json"]
        entry = SourceEntry(
            key=key,
            dataset="pairs",
            file_name=f"{key}.src.jpg",
            image=src or any_ref,
            pair=PairEntry(kind="shards", origin=origin, target=tgt or any_ref),
        )
        if src is None or tgt is None:
            entry.error = "image_missing"
            entry.error_detail = f"{origin}: no {'src.jpg' if src is None else 'edited.jpg'} member"
            yield entry
            continue
        instruction = None
        if "json" in members:
            try:
                record = json.loads(read_blob(members["json"]))
                instruction = _instruction((record.get("instructions") or {}).get("original"))
            except (ValueError, AttributeError, OSError):
                entry.error, entry.error_detail = "bad_record", f"{origin}: the json member is not a record"
                yield entry
                continue
        entry.pair.instruction = instruction
        yield _checked_instruction(entry)
