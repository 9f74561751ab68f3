"""Pixels of a sample: its decoded source photo, a rendered artifact, its target mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from groundedit.formats.tar import read_blob
from groundedit.image import masks
from groundedit.image.codec import SampleError, decode_image, open_image, oriented_size
from groundedit.records import Sample


def source_image(s: Sample) -> Image.Image:
    """The source photo as 8-bit RGB, EXIF orientation applied, at ``source.width`` x ``height`` (scaled
    down when ingest downscaled it); the file must still have the size ingest saw."""
    src = s.source
    data = read_blob(src.image)
    original = src.original_size or (src.width, src.height)
    max_pixels = max(1, original[0] * original[1])
    found = oriented_size(open_image(data, max_pixels))
    if found != tuple(original):
        raise SampleError(
            "image_size_changed", f"the file is {found[0]}x{found[1]}, ingest saw {original[0]}x{original[1]}"
        )
    return decode_image(data, max_pixels, size=(src.width, src.height))


def target_image(s: Sample) -> Image.Image:
    """An edit pair's given target as 8-bit RGB in the source's frame: decoded to ``source.width`` x
    ``height``, which undoes a pure rescale between the two (ingest allowed only those)."""
    if s.pair is None:
        raise SampleError("no_pair", f"{s.key} is not an edit pair")
    data = read_blob(s.pair.target)
    tw, th = s.pair.target_size
    return decode_image(data, max(1, tw * th), size=(s.source.width, s.source.height))


def artifact_image(s: Sample, name: str, out: Path) -> Image.Image:
    """An image a stage wrote for this sample (``src.jpg``, ``edited.jpg``, …) as RGB."""
    if name not in s.artifacts:
        raise SampleError("artifact_missing", f"{name} was not produced for {s.key}")
    return decode_image(
        read_blob(s.artifacts[name], out), max_pixels=max(1, s.source.width * s.source.height)
    )


def target_mask(s: Sample) -> np.ndarray:
    if s.target is None:
        raise SampleError("no_target", "the sample has no selected target")
    return masks.decode(s.target.mask)


def decode_batch(batch: list[Sample], stage: str) -> tuple[list[Sample | None], list[np.ndarray], list[int]]:
    """Decode every sample's source for a model stage: ``(out, images, where)`` where ``out`` holds
    the rejections of undecodable samples (None elsewhere) and ``images[k]`` is ``batch[where[k]]``."""
    out: list[Sample | None] = [None] * len(batch)
    images, where = [], []
    for i, s in enumerate(batch):
        try:
            images.append(np.asarray(source_image(s)))
            where.append(i)
        except SampleError as e:
            out[i] = s.reject(stage, e.reason, e.detail)
    return out, images, where
