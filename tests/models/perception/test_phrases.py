"""Prompt building, chunking and token -> tag mapping on hand-made cases and the tiny tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.perception.phrases import (
    assign_tags,
    build_prompt,
    chunk_tags,
    clean_tag,
    tag_scores,
    token_tags,
)


def _words(text: str) -> int:
    return len(text.split())


def test_prompt_text_and_spans():
    prompt = build_prompt(["Cat", "traffic light", "dog"])
    assert prompt.text == "cat. traffic light. dog."
    assert [prompt.text[s:e] for s, e in prompt.spans] == ["cat", "traffic light", "dog"]
    assert prompt.tags == ("Cat", "traffic light", "dog")


def test_delimiters_inside_a_tag_are_removed():
    assert clean_tag("  St. Bernard?  dog ") == "st bernard dog"


def test_chunks_respect_the_token_limit_and_keep_order():
    tags = ["a", "b c", "d", "e f g", "h"]
    # costs (tokens + "."): 2, 3, 2, 4, 2; each prompt also pays 2 for [CLS] and [SEP].
    prompts, too_long = chunk_tags(tags, _words, max_tokens=8)
    assert [p.tags for p in prompts] == [("a", "b c"), ("d", "e f g"), ("h",)]
    assert too_long == []


def test_too_long_tags_and_duplicates():
    prompts, too_long = chunk_tags(["x", "one two three four five six", "x", "y"], _words, max_tokens=6)
    assert too_long == ["one two three four five six"]
    assert [p.tags for p in prompts] == [("x", "y")]
    assert chunk_tags([], _words, 10) == ([], [])


def test_token_offsets_map_to_tags():
    prompt = build_prompt(["cat", "traffic light"])  # "cat. traffic light."
    offsets = [(0, 0), (0, 3), (3, 4), (5, 12), (13, 16), (16, 18), (18, 19), (0, 0), (0, 0)]
    # [CLS] cat . traffic li ##ght . [SEP] [PAD]
    assert token_tags(offsets, prompt.spans).tolist() == [-1, 0, -1, 1, 1, 1, -1, -1, -1]


def test_tag_scores_take_the_best_token_of_each_tag():
    owner = np.array([-1, 0, -1, 1, 1, -1])
    probs = np.array([[0.9, 0.1, 0.8, 0.3, 0.6, 0.0], [0.0, 0.7, 0.0, 0.2, 0.1, 0.0]])
    np.testing.assert_allclose(tag_scores(probs, owner, 2), [[0.1, 0.6], [0.7, 0.2]])


def test_assign_tags_uses_a_strict_text_threshold():
    scores = np.array([[0.1, 0.6], [0.7, 0.2], [0.2, 0.2], [0.3, 0.1]])
    labels, text = assign_tags(scores, text_threshold=0.3)
    assert labels.tolist() == [1, 0, -1, -1]
    np.testing.assert_allclose(text, [0.6, 0.7, 0.2, 0.3])
    empty_labels, _ = assign_tags(np.zeros((2, 0)), 0.3)
    assert empty_labels.tolist() == [-1, -1]


def test_real_tokenizer_offsets(tiny_paths):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_paths["grounding_dino"])
    prompt = build_prompt(["teddy bear", "zebra", "dog"])
    enc = tok(prompt.text, return_offsets_mapping=True)
    owner = token_tags(enc["offset_mapping"], prompt.spans)
    words = [prompt.tags[o] if o >= 0 else None for o in owner]
    ids = enc["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102  # the [CLS]/[SEP] ids Grounding DINO expects
    assert [i for i, w in zip(ids, words, strict=True) if w is None] == [101, 1012, 1012, 1012, 102]
    # "zebra" is not a whole word in the tiny vocabulary: its word pieces all map back to it.
    assert words.count("zebra") > 1 and words.count("teddy bear") == 2 and words.count("dog") == 1
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    prompts, _ = chunk_tags(["teddy bear", "zebra", "dog"], count, max_tokens=len(ids))
    assert len(prompts) == 1
    prompts, _ = chunk_tags(["teddy bear", "zebra", "dog"], count, max_tokens=len(ids) - 1)
    assert len(prompts) == 2
    for p in prompts:
        assert len(tok(p.text)["input_ids"]) <= len(ids) - 1


@pytest.mark.parametrize("tags", [["dog"], ["dog", "dog"], ["a.b"]])
def test_prompt_round_trip(tags):
    prompt = build_prompt(tags)
    assert [prompt.text[s:e] for s, e in prompt.spans] == [clean_tag(t) for t in tags]
