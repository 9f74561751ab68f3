"""Tiny checkpoints: written like real ones, loadable by the Auto classes, reproducible per seed."""

from __future__ import annotations

import hashlib
import json

from transformers import AutoConfig, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from groundedit.models.chat import TINY_CHAT_MODELS, write_tiny_qwen3, write_tiny_qwen25_vl


def _digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_vision_checkpoint_has_the_files_of_a_real_one(tiny_vl_dir):
    names = {p.name for p in tiny_vl_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json"} <= names
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    config = AutoConfig.from_pretrained(tiny_vl_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_dir)
    assert config.model_type == "qwen2_5_vl" and config.architectures == [
        "Qwen2_5_VLForConditionalGeneration"
    ]
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.get_text_config().vocab_size >= len(tokenizer)
    assert Qwen2VLImageProcessorPil.from_pretrained(tiny_vl_dir).merge_size == 2
    shipped = json.loads((tiny_vl_dir / "generation_config.json").read_text())
    assert shipped["do_sample"] is True and shipped["eos_token_id"][0] == tokenizer.eos_token_id


def test_text_checkpoint_is_text_only(tiny_q3_dir):
    config = AutoConfig.from_pretrained(tiny_q3_dir)
    assert config.model_type == "qwen3" and getattr(config, "vision_config", None) is None
    assert not (tiny_q3_dir / "preprocessor_config.json").exists()


def test_same_seed_same_weights(tmp_path, tiny_q3_dir):
    again = write_tiny_qwen3(tmp_path / "again", seed=0)
    other = write_tiny_qwen3(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(tiny_q3_dir) != _digest(other)


def test_registry_names_the_writers():
    assert {"qwen2_5_vl": write_tiny_qwen25_vl, "qwen3": write_tiny_qwen3} == TINY_CHAT_MODELS
