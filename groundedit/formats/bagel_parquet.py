"""Official Bagel's parquet edit format: column names, row rule, and the ``parquet_info`` file.

Shared by the exporter (``groundedit export --format bagel-parquet``) and the training reader, so
both sides of the format say each fact once. What official Bagel's loader expects (its
``data/interleave_datasets/edit_dataset.py``, ``interleave_t2i_dataset.py`` and ``dataset_base.py``):

- one row per sample, two columns: ``image_list`` — encoded images (bytes, any format PIL opens) —
  and ``instruction_list`` — for each step from image ``i`` to image ``i+1`` a list of alternative
  instructions, of which the loader draws one at random. So ``len(instruction_list) ==
  len(image_list) - 1`` and every inner list is non-empty; other rows fail at load.
- the loader reads one row group at a time; which row groups exist comes from a JSON file,
  ``parquet_info``, mapping each parquet file's path to ``{"num_row_groups": N}``. Its keys must be
  the paths the loader builds: ``os.path.join(data_dir, file_name)`` with ``data_dir`` exactly as
  written in Bagel's ``DATASET_INFO``; files missing from it are silently skipped by Bagel.
- ``DATASET_INFO`` entries (``data/dataset_info.py``) for ``unified_edit`` give ``data_dir``,
  ``num_files``, ``num_total_samples`` and ``parquet_info_path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

IMAGE_LIST = "image_list"
INSTRUCTION_LIST = "instruction_list"
SCHEMA = pa.schema(
    [
        (IMAGE_LIST, pa.list_(pa.binary())),
        (INSTRUCTION_LIST, pa.list_(pa.list_(pa.string()))),
    ]
)
NUM_ROW_GROUPS = "num_row_groups"  # the one key Bagel reads from each parquet_info entry
DATASET_GROUP = "unified_edit"  # Bagel's DATASET_INFO group (and dataset class) for edit data


class BagelFormatError(ValueError):
    """A row or an info file that official Bagel's loader would reject or misread."""


def check_row(image_list: list[bytes], instruction_list: list[list[str]]) -> None:
    """Raise :class:`BagelFormatError` unless the row is one Bagel's edit loader can parse."""
    if len(image_list) < 2:
        raise BagelFormatError(f"{IMAGE_LIST} needs at least 2 images, has {len(image_list)}")
    if len(instruction_list) != len(image_list) - 1:
        raise BagelFormatError(
            f"{len(instruction_list)} instruction steps for {len(image_list)} images (need images - 1)"
        )
    for i, step in enumerate(instruction_list):
        if not step or not all(isinstance(t, str) and t.strip() for t in step):
            raise BagelFormatError(f"instruction step {i} must be a non-empty list of non-empty strings")
    if not all(isinstance(b, bytes) and b for b in image_list):
        raise BagelFormatError(f"every {IMAGE_LIST} entry must be non-empty bytes")


def parquet_info(data_dir: str, files: list[Path]) -> dict[str, dict[str, int]]:
    """The ``parquet_info`` mapping for ``files`` (in ``data_dir``), keyed as Bagel's loader looks
    them up: ``os.path.join(data_dir, name)``."""
    return {
        os.path.join(data_dir, f.name): {NUM_ROW_GROUPS: pq.ParquetFile(f).metadata.num_row_groups}
        for f in files
    }


def read_parquet_info(path: str | Path) -> dict[str, int]:
    """File path -> row groups, from a ``parquet_info`` JSON; raises on any other shape."""
    try:
        doc: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BagelFormatError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(doc, dict) or not doc:
        raise BagelFormatError(f"{path}: expected a non-empty object of file path -> info")
    out = {}
    for file, info in doc.items():
        if not isinstance(info, dict) or not isinstance(info.get(NUM_ROW_GROUPS), int):
            raise BagelFormatError(f"{path}: entry {file!r} needs an integer {NUM_ROW_GROUPS!r}")
        out[file] = info[NUM_ROW_GROUPS]
    return out


def dataset_info_entry(data_dir: str, num_files: int, num_samples: int, info_path: str) -> dict[str, Any]:
    """One entry for Bagel's ``DATASET_INFO[DATASET_GROUP]``, with the keys its loader reads."""
    return {
        "data_dir": data_dir,
        "num_files": num_files,
        "num_total_samples": num_samples,
        "parquet_info_path": info_path,
    }
