"""Tag + ground throughput (RAM++ -> Grounding DINO -> NMS -> SAM) with random weights.

``--config full`` builds the paper's architectures (RAM++ Swin-L/384 with 4585 tags x 51
descriptions, Grounding DINO base with a 30522-token BERT, SAM ViT-H) in memory, so no weights are
needed; ``--config tiny`` builds the tiny profile's models for a quick CPU run. Images are synthetic,
SA-1B sized by default (1500x2250). Random weights pass every box, so ``--max-objects`` caps SAM's
work per image at a realistic count, and each image grounds ``--tags`` tags.

Reports images/s for tagging, for grounding and for both in sequence, and peak memory (CUDA: peak
allocated by torch; CPU: peak resident set of the process).

    PYTHONPATH=. python benchmarks/perception.py --config tiny --device cpu
    PYTHONPATH=. python3 benchmarks/perception.py --config full --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time

import numpy as np
import torch

from groundedit.models.perception import architectures
from groundedit.models.perception.grounder import Grounder
from groundedit.models.perception.grounding_dino import GroundingDinoDetector
from groundedit.models.perception.preprocess import ImageProcessorSettings
from groundedit.models.perception.runtime import resolve_device, resolve_dtype
from groundedit.models.perception.sam import SamSegmenter
from groundedit.models.perception.tagger import Tagger
from groundedit.models.perception.tiny import (
    TINY_WORDS,
    bert_vocab,
    build_grounding_dino,
    build_ram_plus,
    build_sam,
)

SETTINGS = {
    "tiny": dict(num_tags=12, vocab=None, dino=architectures.TINY_DINO_SIZE, sam=architectures.TINY_SAM_SIZE),
    "full": dict(
        num_tags=4585, vocab=30522, dino=architectures.FULL_DINO_SIZE, sam=architectures.FULL_SAM_SIZE
    ),
}


def tag_names(count: int) -> list[str]:
    """Deterministic tags of one to three words from the benchmark tokenizer's words (RAM's are 1-3 tokens)."""
    words = sorted(set(TINY_WORDS))
    phrases = (" ".join(p) for n in (1, 2, 3) for p in itertools.permutations(words, n))
    return list(itertools.islice(phrases, count))


def synthetic_images(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Smooth colour fields with rectangles: cheap to make, not constant."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        base = rng.integers(0, 256, (height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
        image = np.kron(base, np.ones((50, 50, 1), dtype=np.uint8))[:height, :width].copy()
        for _ in range(5):
            y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
            image[y : y + height // 4, x : x + width // 4] = rng.integers(0, 256, 3)
        images.append(image)
    return images


def build(config: str, device: torch.device, dtype: torch.dtype, args) -> tuple[Tagger, Grounder]:
    s = SETTINGS[config]
    vocab = bert_vocab(s["vocab"])
    tags = tag_names(s["num_tags"])
    # Build straight on the target device: initialising ~1.2B parameters on a CPU takes minutes.
    with torch.device(device):
        ram = build_ram_plus(config, s["num_tags"], seed=0)
        dino = build_grounding_dino(config, len(vocab), seed=1)
        sam = build_sam(config, seed=2)
    from transformers import BertTokenizer

    # Thresholds 0 + max_tags: every image gets exactly --tags tags, as a real image gets ~10-30.
    tagger = Tagger(ram, tags, np.zeros(len(tags), np.float32), device=device, dtype=dtype)
    detector = GroundingDinoDetector(
        dino, BertTokenizer(vocab=vocab), ImageProcessorSettings(size=dict(s["dino"])), device=device, dtype=dtype,
        batch_size=args.batch_size,
    )  # fmt: skip
    side = s["sam"]
    sam_settings = ImageProcessorSettings(
        size={"longest_edge": side}, pad_size={"height": side, "width": side}
    )
    segmenter = SamSegmenter(sam, sam_settings, device=device, dtype=dtype, batch_size=args.batch_size)
    grounder = Grounder(detector, segmenter, min_mask_score=float("-inf"), max_objects=args.max_objects)
    return tagger, grounder


def _timed(obj, method: str, totals: dict[str, float]) -> None:
    """Accumulate wall time of ``obj.method`` into ``totals[method]`` (both end with a device->host copy)."""
    inner = getattr(obj, method)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[method] += time.perf_counter() - start

    setattr(obj, method, wrapper)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args) -> dict:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tagger, grounder = build(args.config, device, dtype, args)
    build_s = time.perf_counter() - t0
    images = synthetic_images(args.batch_size * (args.batches + 1), args.height, args.width, seed=0)
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    if device.type == "cuda":
        weights_gib = torch.cuda.memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    tag_s = ground_s = 0.0
    objects = 0
    parts = {"detect": 0.0, "segment": 0.0}
    _timed(grounder.detector, "detect", parts)
    _timed(grounder.segmenter, "segment", parts)
    for n, batch in enumerate(batches):  # batch 0 warms up and is not timed
        if n == 1:
            parts.update(detect=0.0, segment=0.0)
        _sync(device)
        start = time.perf_counter()
        tags = tagger.tag(batch, max_tags=args.tags)
        _sync(device)
        mid = time.perf_counter()
        results = grounder.ground(batch, [[t for t, _ in ts] for ts in tags])
        _sync(device)
        end = time.perf_counter()
        if n:
            tag_s += mid - start
            ground_s += end - mid
            objects += sum(len(r.objects) for r in results)
    timed = args.batch_size * args.batches
    report = {
        "config": args.config,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "image_hw": [args.height, args.width],
        "batch_size": args.batch_size,
        "timed_images": timed,
        "tags_per_image": args.tags,
        "objects_per_image": round(objects / timed, 2),
        "build_s": round(build_s, 1),
        "tag_images_per_s": round(timed / tag_s, 3),
        "ground_images_per_s": round(timed / ground_s, 3),
        "tag_and_ground_images_per_s": round(timed / (tag_s + ground_s), 3),
        "ms_per_image": {
            "tag": round(1000 * tag_s / timed, 1),
            "ground_detect": round(1000 * parts["detect"] / timed, 1),
            "ground_segment": round(1000 * parts["segment"] / timed, 1),
            "ground_other": round(1000 * (ground_s - parts["detect"] - parts["segment"]) / timed, 1),
        },
    }
    if device.type == "cuda":
        report["weights_gib"] = round(weights_gib, 2)
        report["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:
        scale = 2**30 if sys.platform == "darwin" else 2**20
        report["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 2)
    return report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(SETTINGS), default="tiny")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on CUDA)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=2, help="timed batches, after one warm-up batch")
    ap.add_argument("--height", type=int, default=1500)
    ap.add_argument("--width", type=int, default=2250)
    ap.add_argument("--tags", type=int, default=12, help="tags grounded per image")
    ap.add_argument("--max-objects", type=int, default=16, help="boxes segmented per image")
    report = run(ap.parse_args(argv))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
