"""Bagel's own parquet edit format, as its training code reads it (``UnifiedEditIterableDataset``).

A row holds ``image_list`` (encoded images, in edit order) and ``instruction_list`` (one list of
alternative wordings per step: ``instruction_list[i]`` leads from image i to image i + 1). A
``parquet_info`` JSON maps each parquet file to ``{"num_row_groups": n}``; the official loader walks
(file, row group) pairs from it. The exporter (``groundedit export --format bagel-parquet``) writes this
layout with the constants of :mod:`groundedit.formats.bagel_parquet`; :class:`BagelParquetSource` reads it for
training.

As in the official loader, a row yields a window of one or two consecutive steps starting at a random
image, and each step uses one of its wordings at random (the official loader's alternative of joining
two instructions into one text is left out). Randomness is keyed by the row's position and the epoch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

from groundedit.formats import bagel_parquet as bp
from groundedit.formats.bagel_parquet import IMAGE_LIST, INSTRUCTION_LIST
from groundedit.image.codec import SampleError

from .examples import EditExample, decode

PARQUET_INFO_NAME = "parquet_info.json"  # our exporter's name for it; the official examples use any name
MAX_STEPS_PER_WINDOW = 2  # official: end index drawn from start+1 .. start+2


def read_parquet_info(path: Path) -> list[tuple[Path, int]]:
    """(file, row group) units listed by a parquet_info JSON; relative paths resolve against its folder."""
    units = []
    for name, groups in bp.read_parquet_info(path).items():
        file = Path(name) if Path(name).is_absolute() else path.parent / name
        units += [(file, g) for g in range(groups)]
    return units


def folder_units(folder: Path, files: list[Path] | None = None) -> list[tuple[Path, int]]:
    """Units of every ``*.parquet`` in a folder (or of ``files``), row-group counts from the footers."""
    import pyarrow.parquet as pq

    units = []
    for file in files if files is not None else sorted(folder.glob("*.parquet")):
        try:
            n = pq.ParquetFile(file).num_row_groups
        except Exception:  # unreadable footer: listed with one group so the read counts it as skipped
            n = 1
        units += [(file, g) for g in range(n)]
    return units


def parquet_columns(path: Path) -> set[str]:
    """Column names of a ``.parquet`` file, or of the first readable one in a folder (empty if none): how
    the parquet kinds (edit, text-to-image) tell their folders apart."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() and path.suffix == ".parquet" else []
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
    for file in files:
        try:
            return set(pq.read_schema(file).names)
        except Exception:  # an unreadable file says nothing about the folder's kind; try the next
            continue
    return set()


def window(n_images: int, rng: random.Random) -> tuple[int, int]:
    """Start and end image of the steps a row yields (the official draw)."""
    start = rng.randrange(n_images - 1)
    end = rng.randrange(start + 1, min(start + 1 + MAX_STEPS_PER_WINDOW, n_images))
    return start, end


def example_from_row(key: str, images: list, instructions: list, rng: random.Random) -> EditExample:
    """One parquet row → example of the drawn window, or :class:`SampleError`."""
    if images is None or len(images) < 2:
        raise SampleError("too_few_images", f"{0 if images is None else len(images)} images")
    if instructions is None or len(instructions) != len(images) - 1:
        n = 0 if instructions is None else len(instructions)
        raise SampleError("list_length_mismatch", f"{len(images)} images, {n} instruction lists")
    start, end = window(len(images), rng)
    chosen = []
    for step in range(start, end):
        options = [s for s in (instructions[step] or []) if isinstance(s, str) and s.strip()]
        if not options:
            raise SampleError("instruction_missing", f"step {step}")
        chosen.append(rng.choice(options).strip())
    decoded = [decode(images[i], f"image.{i}") for i in range(start, end + 1)]
    return EditExample(key, decoded, chosen)


class BagelParquetSource:
    """Units are (parquet file, row group); items are rows."""

    kind = bp.DATASET_GROUP  # "unified_edit", official Bagel's name for this kind

    def __init__(self, name: str, units: list[tuple[Path, int]]) -> None:
        self.name, self._units = name, units

    @classmethod
    def claims(cls, path: Path) -> bool:
        """A parquet_info ``.json``, a folder holding ``parquet_info.json``, or parquet with the edit columns."""
        if path.is_file() and path.suffix == ".json":
            return True
        if path.is_dir() and (path / PARQUET_INFO_NAME).is_file():
            return True
        return IMAGE_LIST in parquet_columns(path)

    @classmethod
    def from_path(cls, path: Path) -> BagelParquetSource:
        """A parquet_info JSON, a folder holding ``parquet_info.json``, a folder of ``*.parquet`` or one file."""
        if path.is_file() and path.suffix == ".parquet":
            return cls(str(path), folder_units(path.parent, [path]))
        if path.is_file():
            return cls(str(path), read_parquet_info(path))
        if (path / PARQUET_INFO_NAME).is_file():
            return cls(str(path), read_parquet_info(path / PARQUET_INFO_NAME))
        return cls(str(path), folder_units(path))

    def units(self) -> list[str]:
        return [f"{file}#{group}" for file, group in self._units]

    def read(
        self, unit: int, start: int, seed: int, take: Callable[[int], bool] | None = None
    ) -> Iterator[EditExample | SampleError | None]:
        """Items of one unit from row ``start`` on (each an example or the error that skips it; None for a
        row ``take`` refuses, which is not decoded)."""
        import pyarrow.parquet as pq

        file, group = self._units[unit]
        try:
            table = pq.ParquetFile(file).read_row_group(group, columns=[IMAGE_LIST, INSTRUCTION_LIST])
        except Exception as e:
            if start == 0 and take is not None and not take(0):
                yield None  # the error is the unit's one item, and another rank's to count
            elif start == 0:  # counted once, not again when resuming inside this unit
                yield SampleError("parquet_unreadable", f"{file} row group {group}: {type(e).__name__}: {e}")
            return
        images, instructions = table.column(IMAGE_LIST), table.column(INSTRUCTION_LIST)
        for row in range(start, table.num_rows):
            if take is not None and not take(row):
                yield None
                continue
            key = f"{file.name}:{group}:{row}"
            rng = random.Random(f"{seed}:{key}")
            try:
                yield example_from_row(key, images[row].as_py(), instructions[row].as_py(), rng)
            except SampleError as e:
                yield e
