"""Synthetic SA-1B: deterministic multi-object photos with valid masks, in the real on-disk layout.

Each image is a noisy gradient with several overlapping shapes; each shape's *visible* region is an
annotation (COCO RLE, ``bbox``, ``area``, ``predicted_iou``, ``stability_score``, ``point_coords``,
``crop_box``), as in SA-1B's per-image JSON. Images are packed into ``sa_%06d.tar`` shards of
``sa_<id>.jpg`` + ``sa_<id>.json`` members. Used by ``make demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from groundedit.formats.tar import TarWriter
from groundedit.image import masks

PALETTE = [
    (220, 40, 40),
    (40, 160, 60),
    (40, 80, 220),
    (230, 200, 40),
    (150, 60, 200),
    (30, 190, 200),
    (240, 130, 30),
    (120, 120, 120),
    (250, 250, 250),
    (20, 20, 20),
]


def synthetic_photo(rng: np.random.Generator, width: int, height: int, n_objects: int):
    """An RGB photo and the visible mask of each object (later objects occlude earlier ones)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    img = base + (x[..., None] / width) * slope[0] + (y[..., None] / height) * slope[1]
    img += rng.normal(0, 6, size=img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    owner = np.full((height, width), -1, dtype=np.int32)
    for k in range(n_objects):
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        w = rng.uniform(0.08, 0.45) * width
        h = rng.uniform(0.08, 0.45) * height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse(box, fill=255)
        elif shape == 1:
            draw.rectangle(box, fill=255)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=255)
        sel = np.asarray(layer) > 0
        color = np.array(PALETTE[int(rng.integers(len(PALETTE)))], dtype=np.float32)
        shade = color * rng.uniform(0.7, 1.1) + rng.normal(0, 5, size=(int(sel.sum()), 3))
        arr = np.asarray(canvas).copy()
        arr[sel] = np.clip(shade, 0, 255).astype(np.uint8)
        canvas = Image.fromarray(arr, "RGB")
        owner[sel] = k
    return np.asarray(canvas), [owner == k for k in range(n_objects)]


def annotation_json(image_id: int, file_name: str, width: int, height: int, object_masks, rng) -> dict:
    anns = []
    for k, m in enumerate(object_masks):
        if not m.any():
            continue
        rle = masks.encode(m)
        x1, y1, x2, y2 = masks.bbox_of(m)
        ys, xs = np.nonzero(m)
        anns.append(
            {
                "id": image_id * 1000 + k,
                "segmentation": {"size": [height, width], "counts": rle.counts},
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": int(m.sum()),
                "predicted_iou": round(float(rng.uniform(0.8, 1.0)), 4),
                "stability_score": round(float(rng.uniform(0.85, 1.0)), 4),
                "crop_box": [0, 0, width, height],
                "point_coords": [[float(xs[len(xs) // 2]), float(ys[len(ys) // 2])]],
            }
        )
    return {
        "image": {"image_id": image_id, "width": width, "height": height, "file_name": file_name},
        "annotations": anns,
    }


def jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_sa1b_fixture(
    out_dir: str | Path,
    images: int = 12,
    images_per_tar: int = 6,
    size: tuple[int, int] = (320, 240),
    objects: tuple[int, int] = (4, 9),
    seed: int = 0,
) -> list[Path]:
    """Write ``images`` synthetic photos as SA-1B tar shards; return the tar paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    tars = []
    for t in range(0, images, images_per_tar):
        writer = TarWriter(out / f"sa_{t // images_per_tar:06d}.tar")
        for image_id in range(t + 1, min(t + images_per_tar, images) + 1):
            rgb, object_masks = synthetic_photo(
                rng, width, height, int(rng.integers(objects[0], objects[1] + 1))
            )
            name = f"sa_{image_id}"
            doc = annotation_json(image_id, f"{name}.jpg", width, height, object_masks, rng)
            writer.add(f"{name}.jpg", jpeg_bytes(rgb))
            writer.add(f"{name}.json", json.dumps(doc).encode())
        tars.append(writer.close())
    return tars
