"""Image preparation as the official transforms do it: RGB, bicubic resize to the rule, [-1, 1] tensors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .config import ResizeRule


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy; transparent images are composited on white first."""
    if image.mode == "RGBA" or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.split()[3])
        return white
    return image.convert("RGB")


def resize(image: Image.Image, rule: ResizeRule) -> Image.Image:
    """Bicubic resize to the rule's target size (PIL returns a copy when the size already fits)."""
    return image.resize(rule.target_size(*image.size), Image.Resampling.BICUBIC)


def to_tensor(image: Image.Image) -> Tensor:
    """RGB PIL image → float tensor [3, H, W] in [-1, 1] (to [0, 1], then normalise by mean=std=0.5)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return x.sub(0.5).div(0.5)


def to_image(x: Tensor) -> Image.Image:
    """Tensor [3, H, W] in about [-1, 1] → uint8 RGB image (truncating, like the official decoder)."""
    x = (x.float() * 0.5 + 0.5).clamp(0, 1).mul(255).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy())
