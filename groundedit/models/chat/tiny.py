"""Tiny random-weight Qwen2.5-VL and Qwen3 checkpoints, written like downloaded ones.

The ``tiny`` profile, the tests and the demo run the real loading and generation code on these:
``config.json`` + safetensors weights, ``generation_config.json`` (with the sampling defaults the
real checkpoints ship, which our backend must override), the locally built byte-level tokenizer
with its chat template and, for Qwen2.5-VL, ``preprocessor_config.json``. Same seed, same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from groundedit.models.tiny_tokenizer import build_tiny_tokenizer

TINY_VOCAB_SIZE = 1024  # above the tokenizer's size, like real checkpoints' padded vocabularies
TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 16 * 28 * 28

# Sampling defaults of the kind Qwen instruct checkpoints ship; TransformersChatBackend ignores them.
_SHIPPED_SAMPLING = {
    "do_sample": True,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
    "repetition_penalty": 1.05,
}


def _token_ids(out: Path) -> dict[str, int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    names = (
        "<|endoftext|>",
        "<|im_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
    )
    return {name: tok.convert_tokens_to_ids(name) for name in names}


def _save(model, out: Path, ids: dict[str, int]) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        **_SHIPPED_SAMPLING,
    )
    model.save_pretrained(out)


def write_tiny_qwen25_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny ``Qwen2_5_VLForConditionalGeneration`` checkpoint into ``out_dir``; returns it."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = build_tiny_tokenizer(out_dir)
    ids = _token_ids(out)
    text = {
        "vocab_size": TINY_VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        # mrope splits each head's 8 rotary frequencies into temporal/height/width sections.
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
        "window_size": 56,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    _save(model, out, ids)
    Qwen2VLImageProcessorPil(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS).save_pretrained(out)
    return out


def write_tiny_qwen3(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny text-only ``Qwen3ForCausalLM`` checkpoint into ``out_dir``; returns it."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = build_tiny_tokenizer(out_dir)
    ids = _token_ids(out)
    config = Qwen3Config(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    _save(model, out, ids)
    return out


# tiny model name -> writer, for profiles that name tiny models (e.g. ``tiny://qwen2_5_vl``).
TINY_CHAT_MODELS: dict[str, Callable[..., Path]] = {
    "qwen2_5_vl": write_tiny_qwen25_vl,
    "qwen3": write_tiny_qwen3,
}
