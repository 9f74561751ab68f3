"""Bagel's ``vlm_sft`` data (understanding: images and a conversation about them) as a training source.

What official Bagel's ``SftJSONLIterableDataset`` reads (its ``data/vlm_dataset.py``; ``DATASET_INFO`` gives
``jsonl_path`` and ``data_dir``): one JSON object per line, LLaVA style, with ``image`` (a file name, or a
list of them, relative to the image folder) and ``conversations`` (``[{"from": "human" | "gpt", "value":
...}, ...]``). A human turn's ``<image>`` placeholders mark where the images go, in order; gpt turns are
the answers, trained with CE. Lines without ``image`` are text-only conversations.

A source is a ``.jsonl`` file whose images lie in the ``images/`` folder beside it (the layout of Bagel's
example data, ``vlm/llava_ov_si.jsonl`` + ``vlm/images/``) or, without one, in the file's own folder; a
folder is the source of every ``*.jsonl`` in it. Files are never read whole: units are 1 MiB byte ranges
of each file, and a line belongs to the range it starts in, so listing costs one ``stat`` per file and a
read seeks straight to its range.

Where we are stricter than the official loader (which drops what does not fit without a word): a line
whose number of ``<image>`` placeholders differs from its number of images, a turn from another speaker,
a conversation without an answer, an image path that leaves the image folder, and videos (Bagel samples
frames with decord; not supported here) are skipped with a reason each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from groundedit.image.codec import SampleError

from .examples import ConversationExample, Utterance, decode

CHUNK_BYTES = 1 << 20
IMAGE_TOKEN = "<image>"
ASKS, ANSWERS = "human", "gpt"


def image_names(item: dict) -> list[str]:
    if "video" in item:
        raise SampleError("video_unsupported", str(item["video"]))
    names = item.get("image", [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SampleError("conversation_invalid", "'image' must be a file name or a list of them")
    return names


def conversation_parts(turns, n_images: int) -> list[Utterance | int]:
    """The official split of a conversation: human text around ``<image>`` (no loss), images in order,
    gpt answers (CE); counts checked."""
    if not isinstance(turns, list) or not turns:
        raise SampleError("conversation_invalid", "'conversations' must be a non-empty list")
    parts: list[Utterance | int] = []
    images = 0
    for turn in turns:
        speaker, value = (turn.get("from"), turn.get("value")) if isinstance(turn, dict) else (None, None)
        if speaker not in (ASKS, ANSWERS) or not isinstance(value, str):
            raise SampleError(
                "conversation_invalid", f"a turn must be from {ASKS!r} or {ANSWERS!r} with a text"
            )
        if speaker == ANSWERS:
            if value.strip():
                parts.append(Utterance(value, trained=True))
            continue
        pieces = value.split(IMAGE_TOKEN)
        for i, piece in enumerate(pieces):
            if piece.strip():
                parts.append(Utterance(piece.strip(), trained=False))
            if i < len(pieces) - 1:
                parts.append(images)
                images += 1
    if images != n_images:
        raise SampleError("image_count_mismatch", f"{images} {IMAGE_TOKEN} placeholders, {n_images} images")
    if not any(isinstance(p, Utterance) and p.trained for p in parts):
        raise SampleError("no_answer", f"no non-empty {ANSWERS!r} turn")
    return parts


def read_image(folder: Path, name: str):
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise SampleError("image_path_unsafe", name)
    try:
        data = (folder / path).read_bytes()
    except OSError as e:
        raise SampleError("image_missing", f"{folder / path}: {e.strerror or e}") from e
    return decode(data, "image")


def example_from_line(key: str, line: bytes, folder: Path) -> ConversationExample:
    """One JSONL line → example, or :class:`SampleError`."""
    try:
        item = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SampleError("line_invalid", str(e)) from e
    if not isinstance(item, dict):
        raise SampleError("line_invalid", "not a JSON object")
    names = image_names(item)
    parts = conversation_parts(item.get("conversations"), len(names))
    return ConversationExample(key, [read_image(folder, n) for n in names], parts)


class VlmJsonlSource:
    """Units are 1 MiB byte ranges of the JSONL files; items are their non-blank lines."""

    kind = "vlm_sft"

    def __init__(self, name: str, files: list[Path], images: Path) -> None:
        self.name, self.files, self.images = name, files, images
        self._units = [(f, s) for f in files for s in range(0, f.stat().st_size, CHUNK_BYTES)]

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.suffix == ".jsonl" if path.is_file() else any(path.glob("*.jsonl"))

    @classmethod
    def from_path(cls, path: Path) -> VlmJsonlSource:
        files = [path] if path.is_file() else sorted(path.glob("*.jsonl"))
        if not files:
            raise ValueError("no .jsonl files")
        folder = files[0].parent
        images = folder / "images" if (folder / "images").is_dir() else folder
        return cls(str(path), files, images)

    def units(self) -> list[str]:
        return [f"{file}@{start}" for file, start in self._units]

    def _lines(self, unit: int) -> Iterator[bytes]:
        """The non-blank lines that start inside the unit's byte range."""
        file, start = self._units[unit]
        with open(file, "rb") as f:
            if start:
                f.seek(start - 1)
                f.readline()  # the rest of the line that started before the range (or just its newline)
            while f.tell() < start + CHUNK_BYTES:
                line = f.readline()
                if not line:
                    break
                if line.strip():
                    yield line

    def read(
        self, unit: int, start: int, seed: str, take: Callable[[int], bool] | None = None
    ) -> Iterator[ConversationExample | SampleError | None]:
        """Items of one unit from line ``start`` on (each an example or the error that skips it; None for a
        line ``take`` refuses, which is not parsed)."""
        file, offset = self._units[unit]
        for i, line in enumerate(self._lines(unit)):
            if i < start:
                continue
            if take is not None and not take(i):
                yield None
                continue
            try:
                yield example_from_line(f"{file.name}@{offset}:{i}", line, self.images)
            except SampleError as e:
                yield e
