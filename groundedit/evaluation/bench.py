"""Benchmark items and their readers: our JSONL, SmartEdit's Reason-Edit folders, our own shards.

A :class:`BenchItem` is one edit to score: the source image, the edited image (an editor's
output), the instruction, the target (box and/or mask) and optionally an edit type and a caption
for CLIP. Images are paths or bytes; they are decoded when scored.

- **JSONL** (``--bench file.jsonl``), one object per line::

    {"id": "0001", "image": "src/0001.jpg", "edited": "out/0001.png", "instruction": "...",
     "box": [x1, y1, x2, y2], "mask": "masks/0001.png", "edit_type": "color change",
     "clip_text": "a blue car"}

  ``box`` (pixels of ``image``, exclusive end) and/or ``mask`` is required; ``id``, ``edit_type``
  and ``clip_text`` are optional. Relative paths resolve against the file's folder; without
  ``edited``, ``--edited DIR`` must hold ``<id>.png`` (or .jpg / .jpeg / .webp).
- **SmartEdit Reason-Edit** (``--bench folder``): a category folder (``6-Reasoning``, ...) holding
  the originals ``*.png``, their masks ``*_mask.jpg`` and one ``*.txt`` with a line per image,
  ``<instruction> CLIP: <caption>``, all paired in sorted order as SmartEdit's own script pairs
  them; or the benchmark root holding such folders. ``--edited DIR`` holds the editor's outputs
  (``DIR/<category>/`` or ``DIR`` itself), matched by file name, else by sorted order. The edit
  type is the category folder's name.
- **Our shards** (``--bench runs/x``): every exported sample, scoring the dataset's own edits —
  ``src.jpg`` → ``edited.jpg``, the rewritten instruction, the target box and ``mask.png``; the CoT's
  post-edit description is the CLIP caption.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundedit.formats.runfolder import RunFolder
from groundedit.image.codec import SampleError, decode_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PIXELS = 64_000_000
READERS = ("jsonl", "smartedit", "shards")


class BenchError(ValueError):
    """The benchmark input is malformed (the message names the file and line)."""


@dataclass(frozen=True)
class BenchItem:
    id: str
    instruction: str
    source: Path | bytes
    edited: Path | bytes | None
    box: tuple[int, int, int, int] | None = None
    mask: Path | bytes | None = None
    edit_type: str | None = None
    clip_text: str | None = None


def load_rgb(image: Path | bytes) -> np.ndarray:
    """Decode a bench image to (H, W, 3) uint8 (EXIF orientation applied); raises ``SampleError``."""
    data = image if isinstance(image, bytes) else _read(image)
    return decode_rgb(data, MAX_PIXELS)


def load_mask(mask: Path | bytes) -> np.ndarray:
    """A mask image as a boolean (H, W) array: any channel above half is the target."""
    return load_rgb(mask).max(axis=-1) > 127


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SampleError("file_unreadable", f"{path}: {e.strerror or e}") from e


def detect_reader(bench: Path) -> str:
    """The reader for ``bench``: a ``.jsonl`` file, a run folder, or SmartEdit folders."""
    if bench.is_file():
        return "jsonl"
    if RunFolder(bench).run_json.is_file():
        return "shards"
    if bench.is_dir():
        return "smartedit"
    raise BenchError(f"--bench {bench} does not exist")


def read_bench(bench: Path, reader: str | None = None, edited: Path | None = None) -> Iterator[BenchItem]:
    reader = reader or detect_reader(bench)
    if reader == "jsonl":
        return read_jsonl(bench, edited)
    if reader == "smartedit":
        if edited is None:
            raise BenchError("the SmartEdit reader needs --edited DIR (the editor's outputs)")
        return read_smartedit(bench, edited)
    if reader == "shards":
        return read_shards(bench)
    raise BenchError(f"unknown reader '{reader}' (choose from: {', '.join(READERS)})")


def _find_edited(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _box(value) -> tuple[int, int, int, int] | bool | None:
    """A JSONL box as integer pixels; None when absent, False when malformed."""
    if value is None:
        return None
    try:
        x1, y1, x2, y2 = (round(float(v)) for v in value)
    except (TypeError, ValueError):
        return False
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else False


def read_jsonl(path: Path, edited_dir: Path | None = None) -> Iterator[BenchItem]:
    if not path.is_file():
        raise BenchError(f"--bench {path} does not exist")
    base = path.parent
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as e:
                raise BenchError(f"{path}:{n}: not JSON ({e})") from e
            if not isinstance(doc, dict) or not doc.get("image") or not doc.get("instruction"):
                raise BenchError(f"{path}:{n}: needs at least 'image' and 'instruction'")
            if doc.get("box") is None and doc.get("mask") is None:
                raise BenchError(f"{path}:{n}: needs a target 'box' and/or 'mask'")
            box = _box(doc.get("box"))
            if box is False:
                raise BenchError(f"{path}:{n}: 'box' must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
            item_id = str(doc.get("id", n))
            if doc.get("edited"):
                out = base / doc["edited"]
            elif edited_dir is not None:
                out = _find_edited(edited_dir, item_id)
            else:
                raise BenchError(
                    f"{path}:{n}: no 'edited' path, and no --edited DIR to find {item_id}.png in"
                )
            yield BenchItem(
                id=item_id,
                instruction=str(doc["instruction"]),
                source=base / doc["image"],
                edited=out,
                box=box,
                mask=base / doc["mask"] if doc.get("mask") else None,
                edit_type=doc.get("edit_type"),
                clip_text=doc.get("clip_text"),
            )


def _smartedit_categories(root: Path) -> list[Path]:
    if any(root.glob("*_mask.jpg")):
        return [root]
    cats = sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*_mask.jpg")))
    if not cats:
        raise BenchError(f"{root}: no SmartEdit folder here (*.png with *_mask.jpg and a .txt)")
    return cats


def read_smartedit(root: Path, edited_root: Path) -> Iterator[BenchItem]:
    if not root.is_dir():
        raise BenchError(f"--bench {root} does not exist")
    if not edited_root.is_dir():
        raise BenchError(f"--edited {edited_root} is not a folder")
    for cat in _smartedit_categories(root):
        originals = sorted(cat.glob("*.png"))
        masks = sorted(cat.glob("*_mask.jpg"))
        texts = sorted(cat.glob("*.txt"))
        if len(texts) != 1:
            raise BenchError(f"{cat}: expected one instruction .txt file, found {len(texts)}")
        lines = [ln for ln in texts[0].read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not (len(originals) == len(masks) == len(lines)):
            raise BenchError(
                f"{cat}: {len(originals)} images, {len(masks)} masks and {len(lines)} instruction lines differ"
            )
        out_dir = edited_root / cat.name if (edited_root / cat.name).is_dir() else edited_root
        outputs = sorted(p for p in out_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        by_name = all(_find_edited(out_dir, p.stem) for p in originals)
        if not by_name and len(outputs) != len(originals):
            raise BenchError(
                f"{out_dir}: {len(outputs)} edited images for {len(originals)} originals in {cat.name} "
                "(name them like the originals, or give exactly one per original)"
            )
        for i, (image, mask, line) in enumerate(zip(originals, masks, lines, strict=True)):
            instruction, _, caption = line.partition("CLIP:")
            yield BenchItem(
                id=f"{cat.name}/{image.stem}",
                instruction=instruction.strip(),
                source=image,
                edited=_find_edited(out_dir, image.stem) if by_name else outputs[i],
                mask=mask,
                edit_type=cat.name,
                clip_text=caption.strip() or None,
            )


def read_shards(run_folder: Path) -> Iterator[BenchItem]:
    from groundedit.formats.rundata import RunData

    for s in RunData(run_folder).samples(members=True):
        r = s.record
        ins = r.instructions
        yield BenchItem(
            id=s.key,
            instruction=(ins.rewritten or ins.original) if ins else "",
            source=s.members["src.jpg"],
            edited=s.members.get("edited.jpg"),
            box=tuple(r.target.box_xyxy),
            mask=s.members.get("mask.png"),
            edit_type=r.edit_type,
            clip_text=r.cot.post_edit_description if r.cot else None,
        )
