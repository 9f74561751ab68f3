"""Image preparation shared by every chat backend.

Qwen2-VL-family vision towers cut images into 14-pixel patches and merge 2x2 of them into one
token, so each side must be a multiple of 28. We resize here, once, to the size the model's own
processor would choose (its ``smart_resize`` rule: keep the aspect ratio, round each side to the
factor, stay within a pixel budget). Both backends then receive identical pixels and their
processors' own resize is a no-op, so transformers and vLLM see the same input.
"""

from __future__ import annotations

import math

from PIL import Image

PATCH_FACTOR = 28  # 14-pixel patches x 2x2 merge
DEFAULT_MIN_PIXELS = 4 * 28 * 28
DEFAULT_MAX_PIXELS = 1280 * 28 * 28  # Qwen2.5-VL's recommended upper budget
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = PATCH_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """``(height, width)`` rounded to multiples of ``factor`` with ``min_pixels <= h*w <= max_pixels``.

    The Qwen2-VL image processors' rule, step for step, plus one fix: for very elongated images
    their rule can overshoot ``max_pixels`` (the short side is clamped to one patch row); we then
    shorten the long side until the budget holds. So the processors' own resize is always a no-op
    on our output, and both backends encode exactly the pixels we prepared.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds {MAX_ASPECT_RATIO}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} > max_pixels {max_pixels}")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    while h * w > max_pixels and max(h, w) > factor:
        if h >= w:
            h -= factor
        else:
            w -= factor
    return h, w


def prepare_image(
    image: Image.Image,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """An RGB copy of ``image`` at the size the vision tower will use (bicubic, like the processor)."""
    rgb = image.convert("RGB")
    h, w = smart_resize(rgb.height, rgb.width, min_pixels=min_pixels, max_pixels=max_pixels)
    if (h, w) == (rgb.height, rgb.width):
        return rgb
    return rgb.resize((w, h), Image.Resampling.BICUBIC)
