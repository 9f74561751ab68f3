"""Scoring bench items: pixel metrics, optional LPIPS / CLIP, optional judge — one result per item.

Nothing is dropped: an item whose images cannot be read becomes a result with ``error`` set; a
metric that could not be computed is None with a note saying why (no weights given, nothing
changed, judge reply unscored, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from groundedit.evaluation.bench import BenchItem, load_mask, load_rgb
from groundedit.evaluation.judge import EditJudge, JudgeInput
from groundedit.evaluation.metrics import (
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_SIZE,
    box_of_mask,
    pixel_metrics,
    target_mask,
    unedited_region,
)
from groundedit.image.codec import SampleError

METRICS = ("ega", "leakage", "psnr", "ssim", "lpips", "clip", "es")


@dataclass
class EvalOptions:
    change_threshold: int = DEFAULT_CHANGE_THRESHOLD
    size: int = DEFAULT_SIZE
    lpips: object | None = None  # perceptual.LPIPS
    clip: object | None = None  # perceptual.CLIPScorer
    judge: EditJudge | None = None
    judge_batch: int = 8


@dataclass
class ItemResult:
    id: str
    edit_type: str
    values: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRICS))
    changed_pixels: int | None = None
    resized: bool = False
    judge_raw: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Prepared:
    item: BenchItem
    result: ItemResult
    src: np.ndarray | None = None
    edited: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None


def _prepare(item: BenchItem, opts: EvalOptions) -> _Prepared:
    res = ItemResult(item.id, item.edit_type or "unknown")
    p = _Prepared(item, res)
    try:
        if item.edited is None:
            raise SampleError("edited_missing", "no edited image for this item")
        src, edited = load_rgb(item.source), load_rgb(item.edited)
        mask = load_mask(item.mask) if item.mask is not None else None
    except SampleError as e:
        res.error = f"{e.reason}: {e.detail}"
        return p
    h, w = src.shape[:2]
    if edited.shape[:2] != (h, w):  # editors often work at their own resolution
        edited = np.asarray(Image.fromarray(edited).resize((w, h), Image.Resampling.BICUBIC))
        res.resized = True
    if mask is not None and mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    box = item.box or (box_of_mask(mask) if mask is not None else None)
    if box is None:
        res.error = "target_empty: the mask selects no pixel"
        return p
    m = pixel_metrics(src, edited, box, mask, opts.change_threshold, opts.size)
    res.values.update(ega=m.ega, leakage=m.leakage, psnr=m.psnr, ssim=m.ssim)
    res.changed_pixels = m.changed_pixels
    if m.ega is None:
        res.notes.append("ega: undefined, nothing changed")
    if opts.lpips is not None:
        a, b = unedited_region(src, edited, target_mask((h, w), box, mask), opts.size)
        res.values["lpips"] = opts.lpips.distance(a, b)
    else:
        res.notes.append("lpips: not computed (no weights given)")
    if opts.clip is None:
        res.notes.append("clip: not computed (no model given)")
    elif not item.clip_text:
        res.notes.append("clip: not computed (no caption)")
    else:
        x1, y1, x2, y2 = box
        res.values["clip"] = opts.clip.score(edited[y1:y2, x1:x2], item.clip_text)
    p.src, p.edited, p.box = src, edited, box
    return p


def _judge(batch: list[_Prepared], judge: EditJudge | None) -> None:
    todo = [p for p in batch if p.result.error is None]
    if judge is None:
        for p in todo:
            p.result.notes.append("es: not judged (--no-judge)")
        return
    inputs = [JudgeInput(p.item.id, p.src, p.edited, p.box, p.item.instruction) for p in todo]
    for p, v in zip(todo, judge.judge(inputs), strict=True):
        p.result.values["es"] = float(v.score) if v.score is not None else None
        p.result.judge_raw = v.raw
        if v.score is None:
            p.result.notes.append(f"es: unscored ({v.reason})")


def evaluate(items: Iterable[BenchItem], opts: EvalOptions) -> Iterator[ItemResult]:
    """Score every item, in order; the judge sees ``opts.judge_batch`` items per call."""
    batch: list[_Prepared] = []
    for item in items:
        batch.append(_prepare(item, opts))
        if len(batch) >= opts.judge_batch:
            _judge(batch, opts.judge)
            yield from (p.result for p in batch)
            batch = []
    if batch:
        _judge(batch, opts.judge)
        yield from (p.result for p in batch)
