"""RAM++'s tag vocabulary: the tag list, per-class thresholds and (optionally) Chinese tag names.

The Hugging Face repository of the checkpoint holds only the ``.pth``; the official code reads the
lists from its own package (``ram/data/``). We do the same: the released lists ship with groundedit
(``ram_vocab/``, Apache-2.0, see the NOTICE there). The tag list decides the vocabulary folder:

1. a tag list named explicitly (the tag stage's ``tags_file``): its folder;
2. otherwise, when ``ram_tag_list.txt`` lies beside the checkpoint, that folder (a model with its
   own vocabulary, like the tiny profile's);
3. otherwise the shipped lists.

The thresholds and the Chinese names are read from the same folder under their official names,
unless named explicitly (``thresholds_file``, ``chinese_file``). The Chinese list is optional: when
the folder has none and none is named, tags have no Chinese names. :func:`vocab_files` is the one
place that decides, so the preflight checks exactly the files the tag stage will read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TAGS_FILE = "ram_tag_list.txt"
THRESHOLDS_FILE = "ram_tag_list_threshold.txt"
CHINESE_FILE = "ram_tag_list_chinese.txt"
SHIPPED_DIR = Path(__file__).resolve().parent / "ram_vocab"
# RAM++'s threshold for tags the thresholds file does not cover.
DEFAULT_THRESHOLD = 0.68


@dataclass(frozen=True)
class VocabFiles:
    """The files a RAM++ tagger reads; ``chinese`` is None when there is no Chinese list to read."""

    tags: Path
    thresholds: Path
    chinese: Path | None

    def required(self) -> dict[str, Path]:
        """Role -> file for every file that must exist (the Chinese list only when one was chosen)."""
        files = {"tags_file": self.tags, "thresholds_file": self.thresholds}
        if self.chinese is not None:
            files["chinese_file"] = self.chinese
        return files


def vocab_files(
    checkpoint_dir: str | Path | None,
    tags_file: str | Path | None = None,
    thresholds_file: str | Path | None = None,
    chinese_file: str | Path | None = None,
) -> VocabFiles:
    """Decide which vocabulary files to read (see the module docstring).

    ``checkpoint_dir`` is the folder of the checkpoint, or None when it is not on disk yet (a hub
    file not downloaded): then only the shipped lists can be meant.
    """
    beside = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if tags_file:
        folder = Path(tags_file).parent
    elif beside is not None and (beside / TAGS_FILE).is_file():
        folder = beside
    else:
        folder = SHIPPED_DIR
    chinese = Path(chinese_file) if chinese_file else folder / CHINESE_FILE
    return VocabFiles(
        tags=Path(tags_file) if tags_file else folder / TAGS_FILE,
        thresholds=Path(thresholds_file) if thresholds_file else folder / THRESHOLDS_FILE,
        chinese=chinese if chinese_file or chinese.is_file() else None,
    )


def read_tag_list(path: str | Path) -> list[str]:
    """One tag per line, as the official ``ram_tag_list.txt``."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_chinese(path: str | Path, num_tags: int) -> list[str]:
    """The Chinese names, one per line in tag order (the official file pads many with a space)."""
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    if len(names) != num_tags:
        raise ValueError(f"{path}: {len(names)} Chinese names for {num_tags} tags")
    return names


def read_thresholds(path: str | Path, num_tags: int, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-class thresholds, one float per line, as the official ``ram_tag_list_threshold.txt``.

    As in the official model, tags past the end of the file get ``default`` (RAM++'s 0.68).
    """
    values = [float(s) for s in Path(path).read_text(encoding="utf-8").split()]
    if len(values) > num_tags:
        raise ValueError(f"{path}: {len(values)} thresholds for {num_tags} tags")
    return np.asarray(values + [default] * (num_tags - len(values)), dtype=np.float32)


@dataclass(frozen=True)
class Vocab:
    """A loaded vocabulary: tags in class order, their thresholds, and Chinese names if known."""

    tags: list[str]
    thresholds: np.ndarray
    chinese: list[str] | None

    @classmethod
    def load(cls, files: VocabFiles) -> Vocab:
        tags = read_tag_list(files.tags)
        return cls(
            tags=tags,
            thresholds=read_thresholds(files.thresholds, len(tags)),
            chinese=read_chinese(files.chinese, len(tags)) if files.chinese is not None else None,
        )
