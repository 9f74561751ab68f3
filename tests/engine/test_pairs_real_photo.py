"""Edit-region mining on a real photo: matplotlib's sample portrait (shipped in the installed package),
edited in known regions, mined by the pairs recipe's stages with the tiny profile.

The synthetic fixture's objects are flat colour; a photo has texture, soft edges and JPEG noise, so
this is where a difference that only works on flat colour would fail. Local edits (two recolours, a
paste, a removal, a recolour saved at 1.5x) must be mined to IoU >= 0.9 with their true region; a
tint is ``global_edit`` and a re-encode ``no_change``. A removal is a paste read backwards: filling
a region of a real photo leaves parts of it as they were (the fill matches them), so the truth of a
fill would not be what changed.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from groundedit.fixtures import jpeg_bytes
from groundedit.formats.runfolder import RunFolder
from groundedit.formats.storage import read_rows
from groundedit.image import masks
from groundedit.image.difference import mask_iou
from groundedit.pairs_fixture import FixturePair, clearly_edited, edit_pair, read_truth, write_pairs
from groundedit.records import Sample

pytestmark = pytest.mark.slow

MINING = ("pair_ingest", "difference", "localize", "segment")


def photo() -> np.ndarray:
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def _ellipse(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    h, w = shape
    layer = Image.new("L", (w, h), 0)
    ImageDraw.Draw(layer).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return np.asarray(layer) > 0


def real_photo_pairs() -> list[FixturePair]:
    """The photo edited seven ways, each with its true region (None for the tint and the re-encode)."""
    rgb = photo()
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(0)
    pairs = []

    def add(kind: str, source: np.ndarray, target: bytes, instruction: str, truth) -> None:
        if truth is not None:
            edited = np.asarray(Image.open(io.BytesIO(target)).convert("RGB"))
            if edited.shape == source.shape:
                assert clearly_edited(source, edited, truth), kind
        pairs.append(
            FixturePair(f"photo_{len(pairs)}_{kind}", kind, jpeg_bytes(source), target, instruction, truth)
        )

    for cx, cy, rx, ry in ((0.3, 0.7, 60, 40), (0.6, 0.3, 50, 70)):
        target, truth, text = edit_pair(rgb, "recolor", rng, _ellipse((h, w), w * cx, h * cy, rx, ry))
        add("recolor", rgb, jpeg_bytes(target, 88), text, truth)
    pasted, region, text = edit_pair(rgb, "paste", rng)
    add("paste", rgb, jpeg_bytes(pasted, 88), text, region)
    add("remove", pasted, jpeg_bytes(rgb, 88), "Remove the ellipse.", region)
    target, truth, text = edit_pair(rgb, "resized", rng, _ellipse((h, w), w * 0.7, h * 0.8, 70, 45))
    big = Image.fromarray(target).resize((w * 3 // 2, h * 3 // 2), Image.Resampling.LANCZOS)
    add("resized", rgb, jpeg_bytes(np.asarray(big)), text, truth)
    target, _, text = edit_pair(rgb, "tint", rng)
    add("tint", rgb, jpeg_bytes(target, 88), text, None)
    add("unchanged", rgb, jpeg_bytes(rgb, 85), "Make the face look sharper.", None)
    return pairs


def mine(run_pipeline, input_dir, out) -> tuple[dict[str, float], dict[str, str]]:
    """Run the mining stages over ``input_dir``'s manifest: ``(key -> IoU of the mined mask with the
    truth, key -> rejection reason)``."""
    for stage in MINING:
        run_pipeline(input_dir, out, recipe="pairs", stage=stage)
    truth = read_truth(input_dir / "pairs.jsonl")
    data = RunFolder(out).data("segment")
    kept = [
        s
        for p in sorted(data.glob("*.parquet"))
        if not p.name.endswith(".rejected.parquet")
        for s in read_rows(p, Sample)
    ]
    ious = {s.key: mask_iou(masks.decode(s.target.mask), truth[s.key][1]) for s in kept}
    rejected = {}
    for stage in MINING:
        for p in sorted(RunFolder(out).data(stage).glob("*.rejected.parquet")):
            rejected |= {s.key: s.rejection.reason for s in read_rows(p, Sample)}
    return ious, rejected


def test_real_photo_edits_are_mined_to_iou_0_9(run_pipeline, tmp_path, torch_one_thread):
    pairs = real_photo_pairs()
    write_pairs(tmp_path / "in", pairs)
    ious, rejected = mine(run_pipeline, tmp_path / "in", tmp_path / "run")
    kinds = {p.id: p.kind for p in pairs}
    assert rejected == {"photo_5_tint": "global_edit", "photo_6_unchanged": "no_change"}
    assert sorted(kinds[k] for k in ious) == ["paste", "recolor", "recolor", "remove", "resized"]
    assert min(ious.values()) >= 0.9, ious
