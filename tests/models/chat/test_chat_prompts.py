"""Prompt files: parsing, rendering rules, and snapshots of the exact chat-template output.

Regenerate the snapshots after an intended prompt or template change with
``GROUNDEDIT_UPDATE_SNAPSHOTS=1 pytest tests/models/chat/test_chat_prompts.py`` and review the diff.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from groundedit.models.chat import (
    PromptError,
    PromptTemplate,
    Sampling,
    instruct_request,
    load_prompt,
    qc_request,
    rewrite_request,
    saliency_request,
)
from groundedit.models.chat.hf_inputs import render_chat_text

PROMPTS_DIR = Path(__file__).resolve().parents[3] / "prompts"

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("GROUNDEDIT_UPDATE_SNAPSHOTS") == "1"
INSTRUCTION = "Change the color of the second car from the left to blue."


def _requests(templates, scene):
    sampling = Sampling(seed=7)
    return {
        "saliency": saliency_request(templates["saliency"], scene, sampling),
        "instruct": instruct_request(templates["instruct"], scene, "color change", sampling),
        "rewrite": rewrite_request(templates["rewrite"], INSTRUCTION, sampling),
        "qc": qc_request(templates["qc"], scene, scene, INSTRUCTION, sampling),
    }


@pytest.mark.parametrize("task", ["saliency", "instruct", "rewrite", "qc"])
def test_rendered_prompt_matches_snapshot(task, templates, scene, tiny_vl_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_dir)
    request = _requests(templates, scene)[task]
    rendered = render_chat_text(tokenizer, request)
    constraint = json.dumps(request.constraint.model_dump(exclude_none=True), indent=2, ensure_ascii=False)
    text = f"{rendered}\n----- constraint -----\n{constraint}\n"
    path = SNAPSHOTS / f"{task}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing snapshot {path}; run with GROUNDEDIT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


def test_images_precede_text_and_match_the_prompt(templates, scene, tiny_vl_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_dir)
    requests = _requests(templates, scene)
    slots = {task: render_chat_text(tokenizer, r).count("<|image_pad|>") for task, r in requests.items()}
    assert slots == {"saliency": 1, "instruct": 1, "rewrite": 0, "qc": 2}
    user_turn = render_chat_text(tokenizer, requests["qc"]).split("<|im_start|>user\n")[1]
    assert user_turn.index("<|vision_end|>") < user_turn.index("Instruction:")


def test_requests_carry_prompt_identity(templates, scene):
    for task, request in _requests(templates, scene).items():
        assert request.prompt_name == task
        assert request.prompt_sha256 == hashlib.sha256((PROMPTS_DIR / f"{task}.md").read_bytes()).hexdigest()


def test_placeholders_of_each_prompt(templates):
    assert {name: set(t.placeholders) for name, t in templates.items()} == {
        "saliency": set(),
        "instruct": {"edit_type"},
        "rewrite": {"instruction"},
        "qc": {"instruction"},
    }


def test_header_comments_are_not_sent(templates):
    for template in templates.values():
        assert not template.system.startswith("#")
        assert "Placeholders:" not in template.system + template.user


def test_render_requires_exactly_the_placeholders(templates):
    with pytest.raises(PromptError, match="missing"):
        templates["rewrite"].render()
    with pytest.raises(PromptError, match="unexpected"):
        templates["rewrite"].render(instruction="x", edit_type="add")


def test_values_are_inserted_verbatim():
    template = PromptTemplate.from_text("t", '[system]\nS {a}\n[user]\nU {b} {"k": 1}\n')
    assert template.placeholders == {"a", "b"}
    assert template.render(a="{b}", b="x{y}") == ("S {b}", 'U x{y} {"k": 1}')


@pytest.mark.parametrize(
    "text",
    [
        "no sections",
        "[user]\nu\n[system]\ns\n",
        "[system]\n\n[user]\nu\n",
        "[system]\ns\n[user]\nu\n[user]\nv\n",
    ],
)
def test_malformed_prompt_files_are_refused(text):
    with pytest.raises(PromptError):
        PromptTemplate.from_text("bad", text)


def test_load_prompt_by_name_file_or_path(tmp_path):
    (tmp_path / "p.md").write_text("# note\n[system]\nsys\n[user]\nhello {who}\n")
    by_name = load_prompt("p", tmp_path)
    assert by_name == load_prompt("p.md", tmp_path) == load_prompt(str(tmp_path / "p.md"))
    assert (by_name.system, by_name.user) == ("sys", "hello {who}")
    with pytest.raises(PromptError, match="not found"):
        load_prompt("absent", tmp_path)


def test_default_prompt_directory_is_the_projects(monkeypatch):
    monkeypatch.delenv("GROUNDEDIT_PROMPTS_DIR", raising=False)
    assert load_prompt("qc").sha256 == load_prompt("qc", PROMPTS_DIR).sha256


def test_instruct_request_refuses_unknown_edit_type(templates, scene):
    with pytest.raises(ValueError, match="unknown edit type"):
        instruct_request(templates["instruct"], scene, "recolor", Sampling())
