"""Image preprocessing for RAM++, Grounding DINO and SAM, in numpy + PIL (no torchvision).

Each function reproduces the official preprocessing so that real checkpoints see the inputs they were
trained on:

- RAM++: the official ``get_transform`` (torchvision ``Resize((384, 384))`` on a PIL image, which is
  PIL bilinear, then ``ToTensor`` and ImageNet ``Normalize``).
- Grounding DINO: transformers' ``GroundingDinoImageProcessor`` (shortest edge 800, longest 1333, PIL
  bilinear, rescale, normalise; batches padded bottom-right with a pixel mask).
- SAM: transformers' ``SamImageProcessor`` (longest edge 1024, PIL bilinear, rescale, normalise,
  zero-pad bottom-right to 1024x1024) and its ``post_process_masks``.

The Grounding DINO and SAM sizes and statistics are read from the model directory's processor config
(``preprocessor_config.json``, or ``processor_config.json`` as transformers 5 writes it), so a tiny
model's smaller sizes come from its own files.

Resizing and padding happen on the CPU in uint8; rescaling and normalising happen in torch on the
model's device (:func:`normalise`), which moves a third of the bytes and keeps that work off the CPU.
Padding is zero *after* normalisation, as in the official processors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Return an RGB uint8 (H, W, 3) array; PIL images of any mode are converted to RGB."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _resize(image: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling(resample)))


def normalise(batch: np.ndarray, valid: np.ndarray | None, scale: float, mean, std, device=None, dtype=None):
    """uint8 (B, H, W, 3) -> torch (B, 3, H, W): ``(x * scale - mean) / std``, zero where ``valid`` is 0."""
    import torch

    x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() * scale
    x = (x - torch.tensor(mean, device=x.device)[:, None, None]) / torch.tensor(std, device=x.device)[
        :, None, None
    ]
    if valid is not None:
        x = x * torch.from_numpy(valid).to(x.device)[:, None]
    return x.to(dtype) if dtype is not None else x


def ram_batch(images, size: int) -> np.ndarray:
    """RAM++ input: images resized to (size, size), uint8 (B, size, size, 3)."""
    return np.stack([_resize(as_rgb_array(im), size, size, Image.Resampling.BILINEAR) for im in images])


def read_image_processor_config(model_dir: str | Path) -> dict:
    """The image-processor settings of a transformers model directory or hub id."""
    local = Path(model_dir)
    if local.is_dir():
        flat, nested = local / "preprocessor_config.json", local / "processor_config.json"
        flat = flat if flat.is_file() else None
    else:
        from transformers.utils import cached_file

        flat = cached_file(
            str(model_dir), "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
        )
        nested = None if flat else cached_file(str(model_dir), "processor_config.json")
    if flat is not None:
        return json.loads(Path(flat).read_text())
    return json.loads(Path(nested).read_text())["image_processor"]


@dataclass(frozen=True)
class ImageProcessorSettings:
    """The few processor fields our preprocessing uses, with the official processors' defaults."""

    size: dict
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rescale_factor: float = 1 / 255
    resample: int = int(Image.Resampling.BILINEAR)
    pad_size: dict | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> ImageProcessorSettings:
        keep = {k: raw[k] for k in ("size", "rescale_factor", "resample", "pad_size") if k in raw}
        for k in ("image_mean", "image_std"):
            if k in raw:
                keep[k] = tuple(raw[k])
        if not all(raw.get(flag, True) for flag in ("do_resize", "do_rescale", "do_normalize")):
            raise ValueError("processor configs that skip resize, rescale or normalise are not supported")
        return cls(**keep)

    def to_pixels(self, batch: np.ndarray, valid: np.ndarray | None, device=None, dtype=None):
        """Normalise a uint8 batch with these settings (see :func:`normalise`)."""
        return normalise(batch, valid, self.rescale_factor, self.image_mean, self.image_std, device, dtype)


def dino_resize_shape(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    """Output (h, w) of Grounding DINO's resize: shortest edge -> ``shortest`` unless longest > ``longest``."""
    size = shortest
    raw = None
    small, large = float(min(height, width)), float(max(height, width))
    if large / small * size > longest:
        raw = longest * small / large
        size = round(raw)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return (int(raw * height / width) if raw is not None else int(size * height / width)), size
    return size, (int(raw * width / height) if raw is not None else int(size * width / height))


def dino_resized(image, settings: ImageProcessorSettings) -> np.ndarray:
    """One image resized for Grounding DINO, uint8 (h, w, 3)."""
    image = as_rgb_array(image)
    size = settings.size
    h, w = dino_resize_shape(image.shape[0], image.shape[1], size["shortest_edge"], size["longest_edge"])
    return _resize(image, h, w, settings.resample)


def pad_batch(
    arrays: list[np.ndarray], pad_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (h, w, 3) arrays bottom-right into one batch (to ``pad_hw``, default the largest);
    the mask is 1 on real pixels."""
    hmax, wmax = pad_hw or (max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays))
    batch = np.zeros((len(arrays), hmax, wmax, 3), np.uint8)
    mask = np.zeros((len(arrays), hmax, wmax), np.int64)
    for i, a in enumerate(arrays):
        batch[i, : a.shape[0], : a.shape[1]] = a
        mask[i, : a.shape[0], : a.shape[1]] = 1
    return batch, mask


def dino_batch(images, settings: ImageProcessorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Grounding DINO input: resized images padded to one uint8 batch, and the pixel mask."""
    return pad_batch([dino_resized(im, settings) for im in images])


def sam_resize_shape(height: int, width: int, longest: int) -> tuple[int, int]:
    """Output (h, w) of SAM's resize: longest edge -> ``longest``, rounded half up."""
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_batch(images, settings: ImageProcessorSettings):
    """SAM input: uint8 batch padded to the pad size, the valid-pixel mask, and each resized (h, w)."""
    longest = settings.size["longest_edge"]
    pad = settings.pad_size or {"height": longest, "width": longest}
    resized = []
    for image in images:
        image = as_rgb_array(image)
        resized.append(
            _resize(image, *sam_resize_shape(image.shape[0], image.shape[1], longest), settings.resample)
        )
    batch, mask = pad_batch(resized, (pad["height"], pad["width"]))
    return batch, mask, [a.shape[:2] for a in resized]


def sam_masks_to_image(
    low_res, pad_hw: tuple[int, int], resized_hw: tuple[int, int], image_hw: tuple[int, int]
):
    """SAM mask logits (N, h, w) -> boolean masks (N, H, W) at image size, as ``post_process_masks`` does."""
    from torch.nn import functional as F

    x = F.interpolate(low_res[:, None].float(), pad_hw, mode="bilinear", align_corners=False)
    x = x[..., : resized_hw[0], : resized_hw[1]]
    x = F.interpolate(x, image_hw, mode="bilinear", align_corners=False)
    return (x[:, 0] > 0.0).cpu().numpy()
