"""What the transformers perception models (Grounding DINO, SAM) share: the device and dtype choice,
loading a model with its image-processor settings, and placing it for inference."""

from __future__ import annotations

from pathlib import Path

import torch

from groundedit.models.perception.preprocess import ImageProcessorSettings, read_image_processor_config


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when present, else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means bfloat16 on CUDA (float16 where bf16 is unsupported) and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_pretrained(
    model_class: str, path: str | Path, dtype: torch.dtype
) -> tuple[object, ImageProcessorSettings]:
    """The ``transformers`` model ``model_class`` (on the CPU, in ``dtype``) and its image-processor
    settings, from a hub id or a ``save_pretrained`` directory."""
    import transformers

    model = getattr(transformers, model_class).from_pretrained(str(path), dtype=dtype)
    return model, ImageProcessorSettings.from_dict(read_image_processor_config(path))


class OnDevice:
    """A perception model placed for inference: on ``device`` (default: CUDA when present), in ``dtype``
    (default: :func:`resolve_dtype`), in eval mode, with its image-processor settings."""

    def __init__(self, model, settings: ImageProcessorSettings, device=None, dtype=None, batch_size: int = 1):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.settings = settings
        self.batch_size = batch_size
