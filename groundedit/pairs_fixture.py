"""Edit pairs whose true edit region is known: made in code from the synthetic SA-1B photos (or any
photo) by editing one known region, so the tests and the demo can measure edit-region mining.

Kinds, cycled in this order: ``recolor`` (an object painted another colour, its shading kept),
``remove`` (an object filled with the colour around it), ``paste`` (a new shape added), ``tint`` (the
whole picture warmed: a global edit with no region), ``unchanged`` (the source re-encoded: no edit),
``resized`` (a recolour whose target was saved at 1.5x the size). Written as ``pairs.jsonl`` (the JSONL
manifest ``groundedit run --recipe pairs`` reads, paths relative to it) beside ``images/`` and
``truth/`` (each local edit's true region as a PNG mask); every line also carries a ``truth`` object
(kind, box, mask file) that the reader ignores.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from groundedit.fixtures import PALETTE, jpeg_bytes, synthetic_photo
from groundedit.image.difference import srgb_to_lab

KINDS = ("recolor", "remove", "paste", "tint", "unchanged", "resized")
LOCAL_KINDS = ("recolor", "remove", "paste", "resized")
INSTRUCTIONS = {
    "recolor": "Paint the {where} object {color}.",
    "remove": "Remove the {where} object.",
    "paste": "Add a {color} ellipse in the {where} part of the picture.",
    "tint": "Give the whole picture a warm orange tint.",
    "unchanged": "Make the {where} object look sharper.",
    "resized": "Paint the {where} object {color}.",
}
COLOR_NAMES = ["red", "green", "blue", "yellow", "purple", "cyan", "orange", "grey", "white", "black"]
_MIN_DELTA = 30.0  # the edit moves its region at least this far on average (ΔE)
_MIN_PIXEL_DELTA = 20.0  # ... and 98% of its pixels at least this far: the whole truth is visible


@dataclass(frozen=True)
class FixturePair:
    id: str
    kind: str
    source: bytes
    target: bytes
    instruction: str
    truth: np.ndarray | None  # the true edit region in the source frame; None for tint/unchanged


def _deltas(rgb_a: np.ndarray, rgb_b: np.ndarray) -> np.ndarray:
    return np.sqrt(((srgb_to_lab(rgb_a[None]) - srgb_to_lab(rgb_b[None])) ** 2).sum(-1))


def _mean_delta(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
    return float(_deltas(rgb_a, rgb_b).mean())


def clearly_edited(src: np.ndarray, target: np.ndarray, truth: np.ndarray) -> bool:
    """Whether every part of ``truth`` visibly changed (a pasted shape over a look-alike background
    would make a truth no one could see)."""
    d = _deltas(src[truth], target[truth])
    return float(d.mean()) >= _MIN_DELTA and float(np.percentile(d, 2)) >= _MIN_PIXEL_DELTA


def _far_color(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A palette colour far (in ΔE) from the mean of ``rgb`` pixels, and its name."""
    mean = rgb.reshape(-1, 3).mean(axis=0, keepdims=True).astype(np.uint8)
    order = rng.permutation(len(PALETTE))
    for i in order:
        color = np.array(PALETTE[i], dtype=np.uint8)[None]
        if _mean_delta(mean, color) >= 2 * _MIN_DELTA:
            return color[0].astype(np.float32), COLOR_NAMES[i]
    i = max(order, key=lambda j: _mean_delta(mean, np.array(PALETTE[j], dtype=np.uint8)[None]))
    return np.array(PALETTE[i], dtype=np.float32), COLOR_NAMES[i]


def _where(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    col = ("left", "middle", "right")[min(2, int(3 * xs.mean() / w))]
    row = ("top", "middle", "bottom")[min(2, int(3 * ys.mean() / h))]
    return "central" if row == col == "middle" else f"{row} {col}".replace("middle ", "")


def recolor(rgb: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``region`` painted a far colour, keeping its pixels' deviations from their mean (the shading)."""
    pixels = rgb[region].astype(np.float32)
    color, name = _far_color(rgb[region], rng)
    out = rgb.copy()
    out[region] = np.clip(color + (pixels - pixels.mean(axis=0)), 0, 255).astype(np.uint8)
    return out, name


def fill(rgb: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``region`` filled with the median colour of a ring around it, plus mild noise."""
    from scipy import ndimage

    ring = ndimage.binary_dilation(region, iterations=6) & ~region
    color = np.median(rgb[ring].astype(np.float32), axis=0)
    out = rgb.copy()
    noise = rng.normal(0, 4, size=(int(region.sum()), 3))
    out[region] = np.clip(color + noise, 0, 255).astype(np.uint8)
    return out


def paste_ellipse(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """A filled ellipse of a far colour added somewhere; returns the image, its region, the colour."""
    h, w = rgb.shape[:2]
    ew, eh = rng.uniform(0.18, 0.3) * w, rng.uniform(0.18, 0.3) * h
    cx, cy = rng.uniform(ew / 2 + 2, w - ew / 2 - 2), rng.uniform(eh / 2 + 2, h - eh / 2 - 2)
    layer = Image.new("L", (w, h), 0)
    ImageDraw.Draw(layer).ellipse([cx - ew / 2, cy - eh / 2, cx + ew / 2, cy + eh / 2], fill=255)
    region = np.asarray(layer) > 0
    color, name = _far_color(rgb[region], rng)
    out = rgb.copy()
    out[region] = np.clip(color + rng.normal(0, 4, size=(int(region.sum()), 3)), 0, 255).astype(np.uint8)
    return out, region, name


def tint(rgb: np.ndarray) -> np.ndarray:
    """The whole picture pulled halfway towards warm orange."""
    warm = np.array([255, 150, 40], dtype=np.float32)
    return np.clip(0.5 * rgb.astype(np.float32) + 0.5 * warm, 0, 255).astype(np.uint8)


def _pick_object(rgb: np.ndarray, object_masks: list[np.ndarray]) -> np.ndarray | None:
    """The object to edit: one connected region covering 3-25% of the picture, the largest such."""
    from scipy import ndimage

    total = rgb.shape[0] * rgb.shape[1]
    fits = []
    for m in object_masks:
        area = int(m.sum())
        if 0.03 * total <= area <= 0.25 * total and ndimage.label(m)[1] == 1:
            fits.append((area, m))
    return max(fits, key=lambda t: t[0])[1] if fits else None


def edit_pair(
    rgb: np.ndarray, kind: str, rng: np.random.Generator, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Edit ``rgb`` by ``kind``: ``(target pixels, true region or None, instruction)``. ``region`` is the
    object a recolour or removal edits (required for those kinds)."""
    if kind in ("recolor", "resized"):
        target, color = recolor(rgb, region, rng)
        return target, region, INSTRUCTIONS[kind].format(where=_where(region), color=color)
    if kind == "remove":
        return fill(rgb, region, rng), region, INSTRUCTIONS[kind].format(where=_where(region))
    if kind == "paste":
        target, pasted, color = paste_ellipse(rgb, rng)
        return target, pasted, INSTRUCTIONS[kind].format(where=_where(pasted), color=color)
    if kind == "tint":
        return tint(rgb), None, INSTRUCTIONS[kind]
    if kind == "unchanged":
        return rgb, None, INSTRUCTIONS[kind].format(where=_where(region) if region is not None else "main")
    raise ValueError(f"unknown pair kind {kind!r}")


def make_pairs(pairs: int = 12, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[FixturePair]:
    """``pairs`` edit pairs cycling through :data:`KINDS`, from synthetic SA-1B photos."""
    rng = np.random.default_rng(seed)
    width, height = size
    out: list[FixturePair] = []
    while len(out) < pairs:
        kind = KINDS[len(out) % len(KINDS)]
        rgb, object_masks = synthetic_photo(rng, width, height, int(rng.integers(4, 8)))
        region = _pick_object(rgb, object_masks)
        if region is None and kind in ("recolor", "remove", "resized"):
            continue
        target, truth, instruction = edit_pair(rgb, kind, rng, region)
        if truth is not None and not clearly_edited(rgb, target, truth):
            continue  # an edit too faint to be a clear test case: draw another photo
        if kind == "unchanged":
            tgt_bytes = jpeg_bytes(rgb, quality=85)
        elif kind == "resized":
            big = Image.fromarray(target).resize((width * 3 // 2, height * 3 // 2), Image.Resampling.LANCZOS)
            tgt_bytes = jpeg_bytes(np.asarray(big))
        else:
            tgt_bytes = jpeg_bytes(target)
        out.append(
            FixturePair(
                id=f"pair_{len(out):04d}",
                kind=kind,
                source=jpeg_bytes(rgb),
                target=tgt_bytes,
                instruction=instruction,
                truth=truth,
            )
        )
    return out


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(buf, "PNG")
    return buf.getvalue()


def box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def write_pairs(out_dir: str | Path, pairs: list[FixturePair]) -> Path:
    """Write ``pairs`` as ``images/``, ``truth/`` and the manifest ``pairs.jsonl``; return its path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)
    lines = []
    for p in pairs:
        src, tgt = f"images/{p.id}_src.jpg", f"images/{p.id}_tgt.jpg"
        (out / src).write_bytes(p.source)
        (out / tgt).write_bytes(p.target)
        truth: dict = {"kind": p.kind, "box": None, "mask": None}
        if p.truth is not None:
            truth |= {"box": box_of(p.truth), "mask": f"truth/{p.id}.png"}
            (out / truth["mask"]).write_bytes(_png(p.truth))
        lines.append(
            json.dumps(
                {"id": p.id, "source": src, "target": tgt, "instruction": p.instruction, "truth": truth}
            )
        )
    manifest = out / "pairs.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_pairs_fixture(
    out_dir: str | Path, pairs: int = 12, size: tuple[int, int] = (320, 240), seed: int = 0
) -> Path:
    """The pairs fixture in ``out_dir``; returns the manifest's path."""
    return write_pairs(out_dir, make_pairs(pairs, size, seed))


def read_truth(manifest: Path) -> dict[str, tuple[str, np.ndarray | None]]:
    """``id -> (kind, true region or None)`` of a fixture manifest (tests, benchmarks)."""
    found = {}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        t = row["truth"]
        mask = None
        if t["mask"]:
            mask = np.asarray(Image.open(manifest.parent / t["mask"])) > 127
        found[row["id"]] = (t["kind"], mask)
    return found
