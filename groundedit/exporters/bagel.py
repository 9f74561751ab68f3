"""``--format bagel-parquet``: the run's samples as official Bagel edit parquet, in two layouts.

- ``edit`` (plain edit pairs): ``image_list = [src, edited]``, ``instruction_list =
  [[rewritten, original]]`` — both phrasings as alternatives, Bagel draws one per visit.
- ``chain`` (the interleaved reasoning chain): ``image_list = [src, grounded, edited]``,
  ``instruction_list = [[instruction + "\\n" + CoT 1-2 (one per phrasing)], [CoT 3 + "\\n" + CoT 4]]``:
  the textual grounding leads to the grounded image, the editing description to the edited one.
  Bagel's loader samples a sub-chain per visit (src→grounded, grounded→edited, or src→edited with
  the two steps' texts joined), so this layout also teaches the single hops.

A sample lacking what a layout needs (no ``edited.jpg``, no CoT) is skipped for that layout and
counted by reason. Files are ``<layout>/groundedit-<layout>-NNNNN.parquet`` with ``rows_per_group``
rows per row group; ``parquet_info/<layout>.json`` and ``dataset_info.json`` (the entries for Bagel's
``DATASET_INFO``) are written last, keyed by the absolute path of each layout folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from groundedit.exporters.base import ExportError, ExportSummary, fresh_folder, require_samples
from groundedit.formats import bagel_parquet as bp
from groundedit.formats.manifest import atomic_write_bytes
from groundedit.formats.rundata import KeptSample, RunData

LAYOUTS = ("edit", "chain")


def _phrasings(s: KeptSample) -> list[str]:
    ins = s.record.instructions
    if ins is None:
        return []
    return list(dict.fromkeys(t.strip() for t in (ins.rewritten, ins.original) if t and t.strip()))


def edit_row(s: KeptSample) -> tuple[list[bytes], list[list[str]]] | str:
    """The ``edit`` layout's row for ``s``, or the reason it has none."""
    if "edited.jpg" not in s.members:
        return "no_edited_image"
    texts = _phrasings(s)
    if not texts:
        return "no_instruction"
    return [s.members["src.jpg"], s.members["edited.jpg"]], [texts]


def chain_row(s: KeptSample) -> tuple[list[bytes], list[list[str]]] | str:
    """The ``chain`` layout's row for ``s``, or the reason it has none."""
    if "edited.jpg" not in s.members:
        return "no_edited_image"
    if "grounded.jpg" not in s.members:
        return "no_grounded_image"
    cot = s.record.cot
    if cot is None:
        return "no_cot"
    texts = _phrasings(s)
    if not texts:
        return "no_instruction"
    grounding = f"{cot.scene_description}\n{cot.target_localization}"
    editing = f"{cot.editing_description}\n{cot.post_edit_description}"
    images = [s.members["src.jpg"], s.members["grounded.jpg"], s.members["edited.jpg"]]
    return images, [[f"{t}\n{grounding}" for t in texts], [editing]]


ROWS = {"edit": edit_row, "chain": chain_row}


class _LayoutWriter:
    """Rows of one layout into numbered parquet files, each written to a temp name then renamed."""

    def __init__(self, folder: Path, layout: str, rows_per_file: int, rows_per_group: int):
        self.folder, self.layout = folder, layout
        self.rows_per_file, self.rows_per_group = rows_per_file, rows_per_group
        self.images: list[list[bytes]] = []
        self.texts: list[list[list[str]]] = []
        self.files: list[Path] = []
        self.rows = 0

    def add(self, images: list[bytes], texts: list[list[str]]) -> None:
        bp.check_row(images, texts)
        self.images.append(images)
        self.texts.append(texts)
        self.rows += 1
        if len(self.images) >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        if not self.images:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"groundedit-{self.layout}-{len(self.files):05d}.parquet"
        table = pa.table({bp.IMAGE_LIST: self.images, bp.INSTRUCTION_LIST: self.texts}, schema=bp.SCHEMA)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp, row_group_size=self.rows_per_group)
        os.replace(tmp, path)
        self.files.append(path)
        self.images, self.texts = [], []


def export_bagel_parquet(
    run: RunData,
    to: Path,
    layouts: tuple[str, ...] = LAYOUTS,
    rows_per_file: int = 1024,
    rows_per_group: int = 64,
) -> ExportSummary:
    """Write the run's samples as Bagel edit parquet into the fresh folder ``to``."""
    unknown = [layout for layout in layouts if layout not in ROWS]
    if unknown or not layouts:
        raise ExportError(f"unknown layout {unknown} (choose from: {', '.join(LAYOUTS)})")
    if rows_per_file < 1 or rows_per_group < 1:
        raise ExportError("rows per file and per row group must be at least 1")
    require_samples(run)
    to = fresh_folder(to).resolve()
    writers = {
        layout: _LayoutWriter(to / layout, layout, rows_per_file, rows_per_group) for layout in layouts
    }
    summary = ExportSummary("bagel-parquet", to)
    for s in run.samples(members=True):
        for layout, writer in writers.items():
            row = ROWS[layout](s)
            if isinstance(row, str):
                summary.skipped[f"{layout}: {row}"] += 1
            else:
                writer.add(*row)
    dataset_info = {}
    for layout, w in writers.items():
        w.flush()
        summary.rows[layout] = w.rows
        summary.files.extend(w.files)
        if not w.files:
            continue
        data_dir = str(to / layout)
        info_path = to / "parquet_info" / f"{layout}.json"
        info = bp.parquet_info(data_dir, w.files)
        atomic_write_bytes(info_path, json.dumps(info, indent=1).encode())
        dataset_info[f"groundedit_{layout}"] = bp.dataset_info_entry(
            data_dir, len(w.files), w.rows, str(info_path)
        )
    atomic_write_bytes(
        to / "dataset_info.json", json.dumps({bp.DATASET_GROUP: dataset_info}, indent=1).encode()
    )
    return summary
