"""Bagel's ``t2i_pretrain`` parquet (text-to-image data) as a training source.

What official Bagel's ``T2IIterableDataset`` reads (its ``data/t2i_dataset.py``): the ``*.parquet`` files of
a folder (``data_dir`` in its ``DATASET_INFO``), row group by row group; each row holds ``image`` (the
encoded image, bytes) and ``captions`` (a JSON object whose values are alternative captions, one drawn at
random per use). We read the same files; a folder or one ``.parquet`` file is a source, units are (file,
row group) as for edit parquet. A row whose captions are not a JSON object (or list) of non-empty strings
is skipped with its reason, as is an undecodable image. The caption draw is keyed by the row and epoch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from groundedit.image.codec import SampleError

from .bagel_parquet import folder_units, parquet_columns
from .examples import CaptionExample, decode

IMAGE, CAPTIONS = "image", "captions"  # the official t2i_pretrain columns
COLUMNS = (IMAGE, CAPTIONS)


def caption_options(raw) -> list[str]:
    """The captions of one row: the official JSON object of captions (a JSON list is taken too)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise SampleError("caption_invalid", f"not JSON: {e}") from e
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        raise SampleError("caption_invalid", f"a JSON {type(value).__name__}, not an object of captions")
    options = [c.strip() for c in value if isinstance(c, str) and c.strip()]
    if not options:
        raise SampleError("caption_missing")
    return options


class T2IParquetSource:
    """Units are (parquet file, row group); items are rows (image + captions)."""

    kind = "t2i_pretrain"

    def __init__(self, name: str, units: list[tuple[Path, int]]) -> None:
        self.name, self._units = name, units

    @classmethod
    def claims(cls, path: Path) -> bool:
        """A ``.parquet`` file, or a folder of them, whose first file has the t2i columns."""
        return set(COLUMNS) <= parquet_columns(path)

    @classmethod
    def from_path(cls, path: Path) -> T2IParquetSource:
        if path.is_file():
            return cls(str(path), folder_units(path.parent, [path]))
        return cls(str(path), folder_units(path))

    def units(self) -> list[str]:
        return [f"{file}#{group}" for file, group in self._units]

    def read(
        self, unit: int, start: int, seed: str, take: Callable[[int], bool] | None = None
    ) -> Iterator[CaptionExample | SampleError | None]:
        """Items of one unit from row ``start`` on (each an example or the error that skips it; None for a
        row ``take`` refuses, which is not decoded)."""
        import pyarrow.parquet as pq

        file, group = self._units[unit]
        try:
            table = pq.ParquetFile(file).read_row_group(group, columns=list(COLUMNS))
        except Exception as e:
            if start == 0 and take is not None and not take(0):
                yield None  # the error is the unit's one item, and another rank's to count
            elif start == 0:  # counted once, not again when resuming inside this unit
                yield SampleError("parquet_unreadable", f"{file} row group {group}: {type(e).__name__}: {e}")
            return
        images, captions = table.column(IMAGE), table.column(CAPTIONS)
        for row in range(start, table.num_rows):
            if take is not None and not take(row):
                yield None
                continue
            key = f"{file.name}:{group}:{row}"
            try:
                options = caption_options(captions[row].as_py())
                caption = random.Random(f"{seed}:{key}").choice(options)
                yield CaptionExample(key, decode(images[row].as_py(), "image"), caption)
            except SampleError as e:
                yield e
