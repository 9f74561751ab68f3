"""The two model families the edit stage uses, each behind one small protocol and one registry.

- :class:`ImageEditor` — instruction-driven editing of whole images (Bagel).
- :class:`Inpainter` — filling a masked region (LaMa), used for removals.

Entries are ``"module:Class"`` strings, imported when a stage sets up, so naming a backend in a spec
costs nothing at import time.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np
from PIL import Image


class ImageEditor(Protocol):
    def edit(
        self, images: list[Image.Image], instructions: list[str], *, seed: list[int], **kw
    ) -> list[Image.Image]:
        """Edited images, each the size of its input; edit i is seeded with ``seed[i]``."""
        ...


class Inpainter(Protocol):
    def inpaint(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``rgb`` with the ``mask`` region filled; equal to ``rgb`` outside the mask."""
        ...


EDITORS = {"bagel": "groundedit.models.bagel:BagelEditor"}
INPAINTERS = {"lama": "groundedit.models.lama:LamaInpainter"}


def _load(registry: dict[str, str], kind: str, path: str, **kwargs):
    if kind not in registry:
        raise ValueError(f"unknown backend '{kind}' (choose from: {', '.join(registry)})")
    module, cls = registry[kind].split(":")
    return getattr(importlib.import_module(module), cls).from_pretrained(path, **kwargs)


def load_editor(kind: str, path: str, **kwargs) -> ImageEditor:
    return _load(EDITORS, kind, path, **kwargs)


def load_inpainter(kind: str, path: str, **kwargs) -> Inpainter:
    return _load(INPAINTERS, kind, path, **kwargs)
