"""Training examples decoded from any source, and the checks that turn bad data into skip reasons.

An :class:`EditExample` is a chain of images with the instruction between each pair (one step for our
shards, up to two for Bagel's multi-turn parquet rows) and, for GroundEdit samples, the grounding
targets: the grounded image, the target mask and the four CoT steps. A :class:`CaptionExample` is an
image with its caption (Bagel's ``t2i_pretrain`` data), a :class:`ConversationExample` images and a
conversation about them (Bagel's ``vlm_sft`` data). A sample that cannot be used raises
:class:`~groundedit.image.codec.SampleError` with a reason code; the data layer counts it and moves on.
Every example carries the name of the ``--data`` source it came from (set by the data layer), so a
run can count what it trained on per source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from groundedit.image.codec import SampleError, decode_image
from groundedit.records import CoTSteps

# Larger than any training image needs; protects the loader from decompression bombs.
MAX_PIXELS = 64_000_000
SHARD_MEMBERS = ("src.jpg", "grounded.jpg", "edited.jpg", "mask.png", "json")


@dataclass
class Grounding:
    """The GroundEdit targets of one sample."""

    grounded: Image.Image  # the source with the target under a red mask and box
    mask: np.ndarray  # bool [H, W] at the source's size
    cot: tuple[str, str, str, str]  # scene, target localization, editing description, post-edit


@dataclass
class EditExample:
    """``images[0]`` edited by ``instructions[i]`` gives ``images[i + 1]``."""

    key: str
    images: list[Image.Image]
    instructions: list[str]
    grounding: Grounding | None = None
    source: str = ""
    recipe: str = ""  # the groundedit recipe that made it (our shards: "sa1b" or "pairs")


@dataclass
class CaptionExample:
    """Text-to-image: ``image`` generated from ``caption``."""

    key: str
    image: Image.Image
    caption: str
    source: str = ""


@dataclass
class Utterance:
    """One piece of a conversation's text; ``trained`` pieces (the answers) carry the CE loss."""

    text: str
    trained: bool


@dataclass
class ConversationExample:
    """Understanding: ``parts`` in order, each a piece of text or the index of an image in ``images``."""

    key: str
    images: list[Image.Image]
    parts: list[Utterance | int]
    source: str = ""


Example = EditExample | CaptionExample | ConversationExample


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Instructions(_Lenient):
    original: str
    rewritten: str | None = None


class TrainRecord(_Lenient):
    """The fields of an exported ``json`` member that training reads (the rest is ignored)."""

    key: str
    instructions: _Instructions | None = None
    cot: CoTSteps | None = None
    recipe: str = "sa1b"  # records written before the pairs recipe existed are SA-1B ones


def decode(data: bytes | None, member: str) -> Image.Image:
    if data is None:
        raise SampleError("member_missing", member)
    try:
        return decode_image(data, MAX_PIXELS)
    except SampleError as e:
        raise SampleError(f"{member.split('.')[0]}_{e.reason}", e.detail) from e


def decode_mask(data: bytes | None, size: tuple[int, int]) -> np.ndarray:
    if data is None:
        raise SampleError("member_missing", "mask.png")
    try:
        mask = np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 127
    except (OSError, SyntaxError, ValueError) as e:
        raise SampleError("mask_undecodable", str(e)) from e
    if mask.shape[::-1] != size:
        raise SampleError("mask_size_mismatch", f"mask {mask.shape[::-1]} vs image {size}")
    if not mask.any():
        raise SampleError("mask_empty")
    return mask


def example_from_members(key: str, members: dict[str, bytes]) -> EditExample:
    """One sample of our WebDataset shards (members by extension) → example, or :class:`SampleError`."""
    if "json" not in members:
        raise SampleError("member_missing", "json")
    try:
        record = TrainRecord.model_validate_json(members["json"])
    except ValidationError as e:
        raise SampleError("record_invalid", str(e).splitlines()[0]) from e
    if record.instructions is None:
        raise SampleError("instruction_missing")
    if record.cot is None:
        raise SampleError("cot_missing")
    instruction = (record.instructions.rewritten or record.instructions.original).strip()
    cot = record.cot.steps()
    if not instruction:
        raise SampleError("instruction_missing")
    if not all(s.strip() for s in cot):
        raise SampleError("cot_step_empty")
    src = decode(members.get("src.jpg"), "src.jpg")
    edited = decode(members.get("edited.jpg"), "edited.jpg")
    grounded = decode(members.get("grounded.jpg"), "grounded.jpg")
    if edited.size != src.size or grounded.size != src.size:
        raise SampleError("size_mismatch", f"src {src.size}, grounded {grounded.size}, edited {edited.size}")
    mask = decode_mask(members.get("mask.png"), src.size)
    return EditExample(
        key, [src, edited], [instruction], Grounding(grounded, mask, cot), recipe=record.recipe
    )
