"""Perception models of the tag and ground stages: RAM++ tagging, Grounding DINO boxes, SAM masks.

Typical use (a stage's ``setup()`` loads, ``process_batch()`` calls)::

    tagger = Tagger.from_pretrained(ckpt)     # RAM++ .pth; vocabulary beside it, else RAM++'s shipped lists
    grounder = Grounder.from_pretrained(dino, sam, box_threshold=0.25, ...)  # Grounding DINO + SAM
    tags = tagger.tag(images)                                  # [[(tag, prob), ...], ...]
    results = grounder.ground(images, [[t for t, _ in ts] for ts in tags])
    results[0].objects[0].mask, results[0].dropped            # GroundedObject list, drop counts

``write_tiny_perception(cache_dir, seed)`` writes the tiny profile's models in the official formats;
``tiny.write_tiny_ram_plus`` / ``write_tiny_grounding_dino`` / ``write_tiny_sam`` do one model each
with the ``builder(dest) -> path`` signature of :mod:`groundedit.models.hub`.
Importing this package is cheap: torch and transformers load on first use of a model class.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_EXPORTS = {
    "Tagger": "tagger",
    "Grounder": "grounder",
    "GroundedObject": "objects",
    "GroundingResult": "objects",
    "mask_to_rle": "objects",
    "rle_to_mask": "objects",
    "match_sa1b_masks": "sa1b",
    "nms": "nms",
    "RamPlusConfig": "ram_plus",
    "RamPlusCheckpointError": "ram_plus_adapter",
    "write_tiny_perception": "tiny",
    "TINY_GROUNDING": "tiny",
}

__all__ = [
    "TINY_GROUNDING",
    "GroundedObject",
    "Grounder",
    "GroundingResult",
    "RamPlusCheckpointError",
    "RamPlusConfig",
    "Tagger",
    "mask_to_rle",
    "match_sa1b_masks",
    "nms",
    "rle_to_mask",
    "write_tiny_perception",
]

if TYPE_CHECKING:
    from groundedit.models.perception.grounder import Grounder
    from groundedit.models.perception.nms import nms
    from groundedit.models.perception.objects import GroundedObject, GroundingResult, mask_to_rle, rle_to_mask
    from groundedit.models.perception.ram_plus import RamPlusConfig
    from groundedit.models.perception.ram_plus_adapter import RamPlusCheckpointError
    from groundedit.models.perception.sa1b import match_sa1b_masks
    from groundedit.models.perception.tagger import Tagger
    from groundedit.models.perception.tiny import TINY_GROUNDING, write_tiny_perception


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
