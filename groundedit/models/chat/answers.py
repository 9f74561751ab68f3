"""The answers the VLM stages accept, as pydantic models, with the checks every answer must pass.

Each answer class knows how to read a raw model reply (:meth:`parse`) and which decoding
constraint makes a reply of that shape (:meth:`constraint`). JSON answers use the paper's exact
keys as aliases and dump with them, so records carry the paper's format. Validation context may
carry ``edit_type``: an instruction whose type differs from the one asked for is rejected.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from groundedit.models.chat.constraints import bounded_json_schema, single_line_regex
from groundedit.models.chat.request import OutputConstraint
from groundedit.records import EDIT_TYPES, EDITING, POST_EDIT, SCENE, TARGET, EditKind, EditType

# Mentions of the overlay we drew (the red box or mask), not of real objects: anchored on "red" or
# "bounding"/"boxed", so "the cardboard box" or "a red car" still pass. A cheap check by design.
_MARKING = re.compile(
    r"\bbounding[\s-]*box|\bboxed\b|\bred[\s-]+(?:bounding[\s-]+)?"
    r"(?:box|mask|marking|mark|outline|rectangle|frame|border|overlay|highlight)(?:e?[sd])?\b"
    r"|\b(?:highlighted|marked|outlined|enclosed|indicated|framed|masked)\s+(?:in|by|with)\s+(?:a\s+|the\s+)?red\b"
    r"|\bthe\s+(?:highlighted|marked|outlined|masked)\s+(?:object|item|region|area|target|one)\b",
    re.IGNORECASE,
)


def mentions_marking(text: str) -> bool:
    """True when ``text`` talks about the red box/mask overlay instead of the scene."""
    return _MARKING.search(text) is not None


def _no_marking(value: str) -> str:
    match = _MARKING.search(value)
    if match is not None:
        raise PydanticCustomError(
            "mentions_marking", "text mentions the red box or marking: {match}", {"match": match.group(0)}
        )
    return value


def extract_json_object(raw: str) -> str:
    """The text from the first ``{`` to the last ``}``: tolerates code fences or chatter around it."""
    start, end = raw.find("{"), raw.rfind("}")
    return raw[start : end + 1] if 0 <= start < end else raw


class JsonAnswer(BaseModel):
    """Base of answers given as one JSON object."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )

    @classmethod
    def parse(cls, raw: str, context: dict[str, Any] | None = None) -> Self:
        """Validate a raw reply; raises ``pydantic.ValidationError`` with a typed reason."""
        return cls.model_validate_json(extract_json_object(raw), context=context)

    @classmethod
    def constraint(cls, max_string_chars: int) -> OutputConstraint:
        """The JSON schema to decode with, every free-text field capped at ``max_string_chars``."""
        return OutputConstraint(json_schema=bounded_json_schema(cls, max_string_chars))


class SaliencyAnswer(JsonAnswer):
    """Saliency filter verdict: 1 keeps the target (one object, precise mask, not trivial to find)."""

    answer: int = Field(ge=0, le=1, strict=True)

    @property
    def keep(self) -> bool:
        return self.answer == 1


class ChainOfThought(JsonAnswer):
    """The four reasoning steps: 1-2 ground the target in text, 3-4 describe the edit."""

    scene_description: str = Field(alias=SCENE, min_length=1)
    target_localization: str = Field(alias=TARGET, min_length=1)
    editing_description: str = Field(alias=EDITING, min_length=1)
    post_edit_description: str = Field(alias=POST_EDIT, min_length=1)

    @field_validator("*")
    @classmethod
    def _steps_marking(cls, v: str) -> str:
        return _no_marking(v)


class InstructionAnswer(JsonAnswer):
    """An editing instruction with its chain of thought, in the paper's JSON format."""

    editing_type: EditType = Field(alias="Editing_Type")
    editing_instruction: str = Field(alias="Editing_Instruction", min_length=1)
    cot: ChainOfThought = Field(alias="CoT")

    @field_validator("editing_instruction")
    @classmethod
    def _instruction_marking(cls, v: str) -> str:
        return _no_marking(v)

    @classmethod
    def constraint(cls, max_string_chars: int, edit_type: str | None = None) -> OutputConstraint:
        """As :meth:`JsonAnswer.constraint`; with ``edit_type``, ``Editing_Type`` may only be that type."""
        schema = bounded_json_schema(cls, max_string_chars)
        if edit_type is not None:
            if edit_type not in EDIT_TYPES:
                raise ValueError(f"unknown edit type {edit_type!r}; expected one of {EDIT_TYPES}")
            schema["properties"]["Editing_Type"]["enum"] = [edit_type]
        return OutputConstraint(json_schema=schema)

    @model_validator(mode="after")
    def _requested_type(self, info: ValidationInfo) -> Self:
        wanted = (info.context or {}).get("edit_type")
        if wanted is not None and self.editing_type != wanted:
            raise PydanticCustomError(
                "edit_type_mismatch",
                "asked for {wanted}, got {got}",
                {"wanted": wanted, "got": self.editing_type},
            )
        return self


class Box1000(JsonAnswer):
    """A box's corners on GoT's grid, integers in [0, 1000)."""

    x1: int = Field(ge=0, le=999, strict=True)
    y1: int = Field(ge=0, le=999, strict=True)
    x2: int = Field(ge=0, le=999, strict=True)
    y2: int = Field(ge=0, le=999, strict=True)

    def corners(self) -> tuple[int, int, int, int]:
        """``(x1, y1, x2, y2)`` with each pair in order: a model may name the corners either way round."""
        return min(self.x1, self.x2), min(self.y1, self.y2), max(self.x1, self.x2), max(self.y1, self.y2)


class RegionAnswer(JsonAnswer):
    """The VLM's proposal of an edit pair's region: what the edit does there, and the box."""

    edit_kind: EditKind = Field(alias="Edit_Kind")
    box: Box1000 = Field(alias="Box")


BOX_TEXT = re.compile(r"\((\d{1,3}),\s*(\d{1,3})\),\s*\((\d{1,3}),\s*(\d{1,3})\)")


def box_text(box: tuple[tuple[int, int], tuple[int, int]]) -> str:
    """GoT's way of writing a box: ``(x1,y1),(x2,y2)``."""
    (x1, y1), (x2, y2) = box
    return f"({x1},{y1}),({x2},{y2})"


class GoTSteps(JsonAnswer):
    """A GoT-style chain: the scene, the target with its box, the operation, the result."""

    scene: str = Field(alias="Scene", min_length=1)
    target: str = Field(alias="Target", min_length=1)
    operation: str = Field(alias="Operation", min_length=1)
    result: str = Field(alias="Result", min_length=1)

    @field_validator("*")
    @classmethod
    def _steps_marking(cls, v: str) -> str:
        return _no_marking(v)


class ReasoningAnswer(JsonAnswer):
    """The reasoning written for a given edit pair: its type, the edited object's name, the 4-step
    CoT and the GoT chain. With ``box_1000`` in the validation context, the chain's target step must
    write that box, and no other box may appear anywhere in the answer."""

    editing_type: EditType = Field(alias="Editing_Type")
    target_object: str = Field(alias="Target_Object", min_length=1)
    cot: ChainOfThought = Field(alias="CoT")
    got: GoTSteps = Field(alias="GoT")

    @classmethod
    def constraint(cls, max_string_chars: int, box: tuple[tuple[int, int], tuple[int, int]] | None = None):
        """As :meth:`JsonAnswer.constraint`; with ``box``, the GoT target step must contain it."""
        from groundedit.models.chat.constraints import json_string_around_pattern

        schema = bounded_json_schema(cls, max_string_chars)
        if box is not None:
            target = schema["properties"]["GoT"]["properties"]["Target"]
            target["pattern"] = json_string_around_pattern(max_string_chars, box_text(box))
        return OutputConstraint(json_schema=schema)

    @model_validator(mode="after")
    def _box_matches(self, info: ValidationInfo) -> Self:
        wanted = (info.context or {}).get("box_1000")
        if wanted is None:
            return self
        want = box_text(wanted)
        if want not in self.got.target.replace(" ", ""):
            raise PydanticCustomError(
                "box_missing", "the target step does not give the box {want}", {"want": want}
            )
        texts = [*self.cot.model_dump().values(), *self.got.model_dump().values()]
        for text in texts:
            for m in BOX_TEXT.finditer(text):
                found = box_text(((int(m[1]), int(m[2])), (int(m[3]), int(m[4]))))
                if found != want:
                    raise PydanticCustomError(
                        "box_mismatch",
                        "the text gives the box {found}, the region is {want}",
                        {"found": found, "want": want},
                    )
        return self


class QCAnswer(JsonAnswer):
    """Quality judge scores, each 1.0-5.0: edit accuracy inside the box, and seamlessness."""

    region_edit_accuracy: float = Field(alias="RegionEditAccuracy", ge=1.0, le=5.0, strict=True)
    seamless_quality: float = Field(alias="SeamlessQuality", ge=1.0, le=5.0, strict=True)


class EditScoreAnswer(JsonAnswer):
    """The edit judge's overall score (ES), an integer from 1 (failed) to 5 (exactly as asked)."""

    edit_score: int = Field(alias="EditScore", ge=1, le=5, strict=True)


class RewriteAnswer(BaseModel):
    """A paraphrased instruction: one non-empty line of plain text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str
    # Quote pairs a model may wrap its whole answer in; quotes inside the text are kept.
    quote_pairs: ClassVar[dict[str, str]] = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’"}

    @field_validator("instruction")
    @classmethod
    def _one_line(cls, v: str) -> str:
        text = v.strip()
        closing = cls.quote_pairs.get(text[:1])
        if closing and len(text) > 1 and text.endswith(closing) and closing not in text[1:-1]:
            text = text[1:-1].strip()
        if not text:
            raise PydanticCustomError("empty", "the rewrite is empty")
        if len(text.splitlines()) != 1:
            raise PydanticCustomError("not_one_line", "the rewrite spans several lines")
        return _no_marking(text)

    @classmethod
    def parse(cls, raw: str, context: dict[str, Any] | None = None) -> Self:
        """Validate a raw reply; raises ``pydantic.ValidationError`` with a typed reason."""
        return cls.model_validate({"instruction": raw}, context=context)

    @classmethod
    def constraint(cls, max_string_chars: int) -> OutputConstraint:
        """One line of at most ``max_string_chars`` characters."""
        return OutputConstraint(regex=single_line_regex(max_string_chars))
