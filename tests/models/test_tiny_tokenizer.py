"""The tiny tokenizer folder is a whole Qwen2 tokenizer folder: what is built from ``vocab.json`` +
``merges.txt`` alone (as official Bagel's ``Qwen2Tokenizer.from_pretrained`` does) tokenizes exactly like
``tokenizer.json`` read as it is (by the ``tokenizers`` library, as vLLM and xgrammar read it; transformers 5
rebuilds a Qwen2 pipeline around the vocabulary either way)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Qwen2Tokenizer

from groundedit.models.hub import resolve
from groundedit.models.tiny_tokenizer import SPECIAL_TOKENS, build_tiny_tokenizer

TEXTS = [
    "Change the car on the left to blue; it's 1024x768, shot in 2025 with 1000 others.",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n",
    "<think>\n1. Scene: a café in 東京, naïve art\n\n   2. Target location: the   third chair</think>",
    '{"RegionEditAccuracy": 4.5, "SeamlessQuality": 3.0}\r\n\ttabs',
]


def vocab_only(folder, dest):
    """The folder without tokenizer.json: what a vocab/merges loader has to go on."""
    dest.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(folder / name, dest / name)
    return dest


@pytest.mark.parametrize("where", ["built", "tiny_bagel"])
def test_vocab_and_merges_tokenize_like_tokenizer_json(tmp_path, where):
    folder = build_tiny_tokenizer(tmp_path / "tok") if where == "built" else Path(resolve("tiny://bagel"))
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    full = AutoTokenizer.from_pretrained(str(folder))
    official = Qwen2Tokenizer.from_pretrained(str(vocab_only(folder, tmp_path / "vocab-only")))
    assert len(official) == len(full) == raw.get_vocab_size()
    for text in TEXTS:
        ids = raw.encode(text, add_special_tokens=False).ids
        assert official.encode(text, add_special_tokens=False) == ids, text
        assert full.encode(text, add_special_tokens=False) == ids, text
        assert full.decode(ids) == text
    # Qwen2's split pattern: digits one by one; special tokens whole, with the same ids
    assert full.tokenize("2025") == ["2", "0", "2", "5"]
    assert official.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == full.convert_tokens_to_ids(
        list(SPECIAL_TOKENS)
    )
