"""Edit stage: CPU-side cost per sample (decode, crop, blend, EGA checks, JPEG) vs the editor's time.

The baseline is the editor itself, measured in the same run on the same crops: Bagel with random
weights, at full size on a GPU (``--config full --device cuda``) or tiny on the CPU (the default,
for `make bench`; the tiny editor is far cheaper than the real one, so the ratio there is an upper
bound). The CPU side should be a rounding error next to the model.

    PYTHONPATH=. python benchmarks/edit_cpu_side.py [--config tiny|full] [--device cpu|cuda] [--images 8]

Imports only torch/numpy/PIL/transformers pieces, so it runs on a bare GPU machine.

Measured on one H100 80GB (torch 2.11, bf16, random weights, 8 crops of 2250x1500 photos, crop sides
380-870 px, 50 steps, full CFG, batch 8): CPU side 85.2 ms/sample, editor 7198 ms/sample — 1.18%.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bagel_edit import build

from groundedit.image.codec import decode_image, encode_jpeg
from groundedit.image.editing import blend, crop_window, edit_metrics

INSTRUCTIONS = ["Make the second chair from the left red.", "Replace the small dog with a cat."]


def synthetic_jpegs(
    n: int, width: int, height: int, seed: int = 0
) -> list[tuple[bytes, tuple[int, int, int, int]]]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(n):
        img = (
            rng.uniform(40, 200, 3)
            + x[..., None] / width * rng.uniform(-60, 60, 3)
            + y[..., None] / height * 40
        )
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        bw, bh = (int(rng.uniform(0.08, 0.2) * s) for s in (width, height))
        x1, y1 = int(rng.uniform(0, width - bw)), int(rng.uniform(0, height - bh))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=92)
        out.append((buf.getvalue(), (x1, y1, x1 + bw, y1 + bh)))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="default: 50 (full) / 4 (tiny)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=2250)
    ap.add_argument("--height", type=int, default=1500)
    args = ap.parse_args(argv)
    steps = args.steps or (50 if args.config == "full" else 4)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    editor = build(args.config, device, dtype)
    data = synthetic_jpegs(args.images, args.width, args.height)

    t0 = time.perf_counter()
    prepared = []
    for blob, box in data:
        rgb = np.asarray(decode_image(blob, 10**9))
        crop = crop_window(box, rgb.shape[1], rgb.shape[0], 0.5, 32)
        x1, y1, x2, y2 = crop
        prepared.append((rgb, box, crop, Image.fromarray(rgb[y1:y2, x1:x2])))
    cpu_before = time.perf_counter() - t0

    crops = [p[3] for p in prepared]
    texts = [INSTRUCTIONS[i % 2] for i in range(len(crops))]
    editor.edit(crops[:1], texts[:1], seed=[0], steps=2)  # warm-up (kernels, compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    edited = editor.edit(crops, texts, seed=list(range(len(crops))), steps=steps, batch_size=args.batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    model_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for (rgb, box, crop, _), im in zip(prepared, edited, strict=True):
        result = blend(rgb, np.asarray(im.convert("RGB")), crop, 16)
        edit_metrics(rgb, result, box, 24, region=crop)
        encode_jpeg(result)
    cpu_after = time.perf_counter() - t0

    n = len(crops)
    cpu_ms = 1000 * (cpu_before + cpu_after) / n
    model_ms = 1000 * model_s / n
    sides = [f"{c.width}x{c.height}" for c in crops]
    print(
        f"edit_cpu_side  {args.config} Bagel on {device}, {n} crops of {args.width}x{args.height} photos, {steps} steps"
    )
    print(f"  crops: {', '.join(sides)}")
    print(f"  CPU side (decode, crop, blend, checks, JPEG)  {cpu_ms:8.1f} ms/sample")
    print(f"  editor (batch {args.batch})                        {model_ms:8.1f} ms/sample")
    print(f"  CPU side / editor                              {cpu_ms / model_ms:8.2%}")
    return {"cpu_ms": cpu_ms, "model_ms": model_ms, "ratio": cpu_ms / model_ms}


if __name__ == "__main__":
    main()
