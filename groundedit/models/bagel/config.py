"""Configuration of the lean Bagel-7B-MoT: language model, SigLIP ViT, FLUX VAE and the glue between them.

The official checkpoint folder describes the language model in ``llm_config.json`` (a Qwen2 config) and the
ViT in ``vit_config.json`` (a SigLIP vision config); the VAE has no config file (its shape is read from
``ae.safetensors``). Settings the official code hard-codes in its launch scripts (latent grid size, image
resolution rules) live in :class:`BagelConfig` with the official values as defaults; a folder may override
them in an optional ``groundedit_bagel.json`` (the tiny profile does, to keep test images small).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

EXTRA_CONFIG_FILE = "groundedit_bagel.json"
# The official code sizes ``vit_pos_embed`` with a hard-coded ``vit_max_num_patch_per_side=70`` rather
# than from ``vit_config.json``; we size it from the config, so the two must agree (980 px / 14).
OFFICIAL_VIT_PATCHES_PER_SIDE = 70


def _pick(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class LLMConfig:
    """Qwen2 decoder with two experts per layer (understanding and generation)."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> LLMConfig:
        act = data.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"llm_config.json: hidden_act {act!r} is not supported (Bagel uses 'silu')")
        if data.get("rope_scaling"):
            raise ValueError("llm_config.json: rope_scaling is not supported (Bagel uses plain RoPE)")
        return cls(**_pick(cls, data))

    def to_json_dict(self) -> dict[str, Any]:
        """The official ``llm_config.json`` layout (a Qwen2 config plus Bagel's MoT switches)."""
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "tie_word_embeddings": False,
            "qk_norm": True,
            "layer_module": "Qwen2MoTDecoderLayer",
            "use_sliding_window": False,
            "rope_scaling": None,
            **dataclasses.asdict(self),
        }


@dataclass(frozen=True)
class ViTConfig:
    """SigLIP-so400m NaViT. ``num_hidden_layers`` is the value on disk; Bagel runs one layer fewer."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    patch_size: int = 14
    image_size: int = 980
    layer_norm_eps: float = 1e-6

    @property
    def layers_used(self) -> int:
        # Bagel feeds the LLM the penultimate SigLIP layer: the official loaders drop the last layer.
        return self.num_hidden_layers - 1

    @property
    def max_patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ViTConfig:
        act = data.get("hidden_act", "gelu_pytorch_tanh")
        if act != "gelu_pytorch_tanh":
            raise ValueError(f"vit_config.json: hidden_act {act!r} is not supported")
        return cls(**_pick(cls, data))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "model_type": "siglip_vision_model",
            "hidden_act": "gelu_pytorch_tanh",
            **dataclasses.asdict(self),
        }


@dataclass(frozen=True)
class VAEConfig:
    """FLUX autoencoder. The defaults are FLUX.1's; a checkpoint's shapes override the layout fields."""

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> VAEConfig:
        """Infer the layout from the tensor shapes of an ``ae.safetensors`` file."""
        try:
            ch = shapes["encoder.conv_in.weight"][0]
            levels = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down.")})
            ch_mult = tuple(shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] // ch for i in levels)
            blocks = {int(k.split(".")[4]) for k in shapes if k.startswith("encoder.down.0.block.")}
            return cls(
                in_channels=shapes["encoder.conv_in.weight"][1],
                out_channels=shapes["decoder.conv_out.weight"][0],
                ch=ch,
                ch_mult=ch_mult,
                num_res_blocks=len(blocks),
                z_channels=shapes["decoder.conv_in.weight"][1],
            )
        except (KeyError, IndexError) as exc:
            raise ValueError(f"ae.safetensors does not look like a FLUX autoencoder: missing {exc}") from exc


@dataclass(frozen=True)
class ResizeRule:
    """The official image transform's resolution rule: long side ≤ max, short side ≥ min, both × stride.

    The max-pixels branch reproduces the official code exactly, including that it scales the sides by the
    area ratio; it never triggers for the default limits.
    """

    max_size: int
    min_size: int
    stride: int
    max_pixels: int = 14 * 14 * 9 * 1024

    def _scaled(self, width: float, height: float, scale: float) -> tuple[int, int]:
        def fit(v: float) -> int:
            return max(self.stride, int(round(round(v * scale) / self.stride) * self.stride))

        return fit(width), fit(height)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) an image of the given size is resized to."""
        scale = min(self.max_size / max(width, height), 1.0)
        scale = max(scale, self.min_size / min(width, height))
        w, h = self._scaled(width, height, scale)
        if w * h > self.max_pixels:
            w, h = self._scaled(w, h, self.max_pixels / (w * h))
        if max(w, h) > self.max_size:
            w, h = self._scaled(w, h, self.max_size / max(w, h))
        return w, h


@dataclass(frozen=True)
class BagelConfig:
    """The whole model: the three parts plus the heads that join them."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vae_image: ResizeRule = ResizeRule(1024, 512, 16)
    vit_image: ResizeRule = ResizeRule(980, 224, 14)
    # Training draws logit-normal timesteps and applies this shift (official training default 1.0).
    train_timestep_shift: float = 1.0

    @property
    def latent_downsample(self) -> int:
        """Image pixels per latent token side (VAE ×8, then 2×2 latent patches)."""
        return self.vae.downsample * self.latent_patch_size

    @property
    def latent_token_dim(self) -> int:
        return self.latent_patch_size**2 * self.vae.z_channels

    def extra_json_dict(self) -> dict[str, Any]:
        """The settings the official folder layout has no file for (``groundedit_bagel.json``)."""
        return {
            "latent_patch_size": self.latent_patch_size,
            "max_latent_size": self.max_latent_size,
            "vae_image": dataclasses.asdict(self.vae_image),
            "vit_image": dataclasses.asdict(self.vit_image),
            "train_timestep_shift": self.train_timestep_shift,
            "vit_max_patches_per_side": self.vit.max_patches_per_side,
        }

    @classmethod
    def from_parts(
        cls, llm: dict[str, Any], vit: dict[str, Any], vae: VAEConfig, extra: dict[str, Any] | None = None
    ) -> BagelConfig:
        official = extra is None
        extra = dict(extra or {})
        for key in ("vae_image", "vit_image"):
            if key in extra:
                extra[key] = ResizeRule(**extra[key])
        vit_config = ViTConfig.from_json_dict(vit)
        # Without our extra file the folder is the official release, read by code that hard-codes 70;
        # our own folders declare their size (folders written before that declared nothing: trusted).
        if official:
            expected = OFFICIAL_VIT_PATCHES_PER_SIDE
        else:
            expected = extra.get("vit_max_patches_per_side", vit_config.max_patches_per_side)
        if vit_config.max_patches_per_side != expected:
            raise ValueError(
                f"vit_config.json: image_size {vit_config.image_size} / patch_size {vit_config.patch_size} "
                f"gives {vit_config.max_patches_per_side} ViT patches per side, but the checkpoint's "
                f"vit_pos_embed is made for {expected} (official Bagel: vit_max_num_patch_per_side=70); "
                f"set image_size to {expected * vit_config.patch_size} in vit_config.json"
            )
        return cls(llm=LLMConfig.from_json_dict(llm), vit=vit_config, vae=vae, **_pick(cls, extra))
