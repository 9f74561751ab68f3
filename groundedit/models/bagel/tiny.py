"""A deterministic tiny Bagel (same architecture, small widths) written in the official folder layout.

Used by tests and the ``tiny`` profile: :func:`write_tiny_bagel` writes a folder that
:func:`~groundedit.models.bagel.load_bagel` and ``BagelEditor.from_pretrained`` load through the same code
path as the real checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ..tiny_tokenizer import build_tiny_tokenizer
from .config import BagelConfig, LLMConfig, ResizeRule, VAEConfig, ViTConfig
from .loading import save_bagel
from .model import Bagel
from .vae import FluxVAE


def tiny_config(vocab_size: int) -> BagelConfig:
    """Four MoT layers of width 64 (GQA 4/2), a 2-layer ViT of width 32, a 4-level VAE of width 32."""
    return BagelConfig(
        llm=LLMConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        vit=ViTConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=224
        ),
        vae=VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1),
        max_latent_size=8,
        vae_image=ResizeRule(max_size=64, min_size=32, stride=16),
        vit_image=ResizeRule(max_size=56, min_size=28, stride=14),
    )


def init_vae(vae: FluxVAE, generator: torch.Generator) -> None:
    """Fan-in scaled normal weights (so random latents and images carry signal), unit norms, zero biases."""
    with torch.no_grad():
        for name, p in sorted(vae.named_parameters(), key=lambda kv: kv[0]):
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=generator)


def write_tiny_bagel(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Bagel (configs, ``ema.safetensors``, ``ae.safetensors``, tokenizer) to ``out_dir``.

    The same seed always gives the same files.
    """
    out = Path(out_dir)
    build_tiny_tokenizer(out)
    vocab = len(AutoTokenizer.from_pretrained(str(out)))
    config = tiny_config(vocab)
    generator = torch.Generator().manual_seed(seed)
    model, vae = Bagel(config), FluxVAE(config.vae)
    model.init_weights(generator, std=0.05)
    init_vae(vae, generator)
    return save_bagel(out, model, vae)
