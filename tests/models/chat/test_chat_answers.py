"""Answer models: the paper's keys, ranges, the red-marking check, and their decoding constraints."""

from __future__ import annotations

import json
import re

import pytest
import xgrammar as xgr
from pydantic import ValidationError

from groundedit.models.chat import (
    EDIT_TYPES,
    InstructionAnswer,
    QCAnswer,
    RewriteAnswer,
    SaliencyAnswer,
    mentions_marking,
)
from groundedit.models.chat.constraints import json_string_pattern, single_line_regex

COT = {
    "1_Scene_Description": "A street with parked cars and a cyclist.",
    "2_Target_Localization": "The second car from the left, a small blue hatchback.",
    "3_Editing_Description": "Repaint the hatchback yellow; nothing else changes.",
    "4_Post_Edit_Description": "The hatchback is yellow; the street is unchanged.",
}
INSTRUCTION = {
    "Editing_Type": "color change",
    "Editing_Instruction": "Paint the second car yellow.",
    "CoT": COT,
}


def _errors(model, raw, context=None):
    with pytest.raises(ValidationError) as info:
        model.parse(raw, context)
    return {e["type"] for e in info.value.errors()}


def test_instruction_round_trips_with_the_paper_keys():
    answer = InstructionAnswer.parse(json.dumps(INSTRUCTION))
    assert answer.cot.target_localization.startswith("The second car")
    assert answer.model_dump() == INSTRUCTION
    assert list(answer.model_dump()["CoT"]) == list(COT)


def test_reply_inside_code_fences_is_accepted():
    assert SaliencyAnswer.parse('```json\n{"answer": 1}\n```').keep


@pytest.mark.parametrize(
    "text",
    [
        "The car inside the red box is blue.",
        "the bounding box marks a dog",
        "The boxed person waves.",
        "a cat highlighted in red",
        "the object under the red mask",
        "the Red-Outlined chair",
        "Make the highlighted object bigger.",
    ],
)
def test_marking_mentions_are_detected(text):
    assert mentions_marking(text)


@pytest.mark.parametrize(
    "text",
    [
        "Remove the cardboard box on the table.",
        "Change the red car to blue.",
        "a mailbox by the door",
        "red fabric",
    ],
)
def test_real_boxes_and_red_things_pass(text):
    assert not mentions_marking(text)


def test_cot_or_instruction_mentioning_the_box_is_rejected():
    bad_cot = {**INSTRUCTION, "CoT": {**COT, "2_Target_Localization": "The car in the red box."}}
    assert _errors(InstructionAnswer, json.dumps(bad_cot)) == {"mentions_marking"}
    bad_instruction = {**INSTRUCTION, "Editing_Instruction": "Recolor the boxed car."}
    assert _errors(InstructionAnswer, json.dumps(bad_instruction)) == {"mentions_marking"}


def test_edit_type_must_be_known_and_match_the_request():
    assert "literal_error" in _errors(
        InstructionAnswer, json.dumps({**INSTRUCTION, "Editing_Type": "recolor"})
    )
    assert _errors(InstructionAnswer, json.dumps(INSTRUCTION), {"edit_type": "remove"}) == {
        "edit_type_mismatch"
    }
    assert InstructionAnswer.parse(json.dumps(INSTRUCTION), {"edit_type": "color change"})


def test_blank_and_missing_steps_are_rejected():
    blank = {**INSTRUCTION, "CoT": {**COT, "3_Editing_Description": "   "}}
    assert _errors(InstructionAnswer, json.dumps(blank)) == {"string_too_short"}
    missing = {**INSTRUCTION, "CoT": {k: v for k, v in COT.items() if k != "1_Scene_Description"}}
    assert _errors(InstructionAnswer, json.dumps(missing)) == {"missing"}


def test_qc_scores_are_strict_floats_in_range():
    assert QCAnswer.parse('{"RegionEditAccuracy": 4, "SeamlessQuality": 3.5}').region_edit_accuracy == 4.0
    assert _errors(QCAnswer, '{"RegionEditAccuracy": 5.5, "SeamlessQuality": 3}') == {"less_than_equal"}
    assert _errors(QCAnswer, '{"RegionEditAccuracy": 0.5, "SeamlessQuality": 3}') == {"greater_than_equal"}
    assert _errors(QCAnswer, '{"RegionEditAccuracy": "4", "SeamlessQuality": true}') == {"float_type"}


def test_saliency_is_zero_or_one():
    assert SaliencyAnswer.parse('{"answer": 1}').keep and not SaliencyAnswer.parse('{"answer":0}').keep
    assert _errors(SaliencyAnswer, '{"answer": 2}') == {"less_than_equal"}
    assert _errors(SaliencyAnswer, '{"answer": true}') == {"int_type"}
    assert _errors(SaliencyAnswer, '{"keep": 1}') == {"missing", "extra_forbidden"}


def test_rewrite_is_one_clean_line():
    assert (
        RewriteAnswer.parse('  "Make the second car yellow."\n').instruction == "Make the second car yellow."
    )
    assert RewriteAnswer.parse("“Swap the 'OPEN' sign.”").instruction == "Swap the 'OPEN' sign."
    assert RewriteAnswer.parse("'OPEN' sign goes, 'SHUT' sign comes").instruction.endswith("comes")
    assert _errors(RewriteAnswer, " \n ") == {"empty"}
    assert _errors(RewriteAnswer, "First line.\nSecond line.") == {"not_one_line"}
    assert _errors(RewriteAnswer, "Paint the car inside the red box.") == {"mentions_marking"}


def _string_schemas(node):
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from _string_schemas(value)


@pytest.mark.parametrize("model", [SaliencyAnswer, InstructionAnswer, QCAnswer])
def test_generation_schemas_are_bounded_and_compile(model):
    schema = model.constraint(50).json_schema
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    for node in _string_schemas(schema):
        assert "enum" in node or node["pattern"] == json_string_pattern(50)
    xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))


def test_instruct_schema_can_pin_the_edit_type():
    schema = InstructionAnswer.constraint(50, edit_type="remove").json_schema
    assert schema["properties"]["Editing_Type"]["enum"] == ["remove"]
    assert InstructionAnswer.constraint(50).json_schema["properties"]["Editing_Type"]["enum"] == list(
        EDIT_TYPES
    )
    with pytest.raises(ValueError):
        InstructionAnswer.constraint(50, edit_type="paint")


def test_patterns_accept_what_validation_accepts_and_nothing_unbounded():
    string = re.compile(json_string_pattern(5))
    assert string.fullmatch("abcde") and string.fullmatch("a") and string.fullmatch("a b")
    assert not any(string.fullmatch(s) for s in ["", " a", "abcdef", 'a"b', "a\\b", "a\tb"])
    line = re.compile(single_line_regex(5))
    assert line.fullmatch("ab cd") and not any(
        line.fullmatch(s) for s in ["", " ab", "a\nb", "abcdef", "a\u2028b"]
    )
    xgr.Grammar.from_regex(single_line_regex(300))
