"""The Bagel module: language model, ViT and the heads joining them to the VAE latent space.

:meth:`Bagel.forward` is the training (and full-recompute) pass over a :class:`PackedBatch`: it returns the
text cross-entropy, the rectified-flow MSE, chosen hidden layers and the ViT features in one pass.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SegmentAttention, split_segments
from .blocks import Connector, PositionTable, TimestepEmbedder, patchify
from .config import BagelConfig
from .packing import PackedBatch
from .qwen2_mot import Attention, Qwen2MoTForCausalLM, Route
from .siglip import SiglipVisionModel
from .vae import FluxVAE


def shift_timesteps(t: Tensor, shift: float) -> Tensor:
    """The flow-time shift used for training draws and for the sampling schedule."""
    return shift * t / (1 + (shift - 1) * t)


@dataclass
class BagelOutput:
    """What one training pass returns (losses are means over their tokens; None when there are none)."""

    ce: Tensor | None
    mse: Tensor | None
    final_hidden: Tensor  # [T, hidden], each token normed by its expert's final norm
    hidden_states: dict[int, Tensor] = field(default_factory=dict)  # layer k → residual stream [T, hidden]
    vit_features: list[Tensor] = field(default_factory=list)  # per ViT image, SigLIP output [n, vit_hidden]
    ce_per_token: Tensor | None = None
    mse_per_token: Tensor | None = None  # [n_noised_tokens], mean over latent channels
    velocity: Tensor | None = None  # predicted v for the noised tokens, [n_noised_tokens, latent_dim]


class Bagel(nn.Module):
    """Parameter names and shapes match the official ``ema.safetensors``."""

    def __init__(self, config: BagelConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.llm.hidden_size
        self.language_model = Qwen2MoTForCausalLM(config.llm)
        self.vit_model = SiglipVisionModel(config.vit)
        self.connector = Connector(config.vit.hidden_size, hidden)
        self.vit_pos_embed = PositionTable(config.vit.max_patches_per_side, hidden)
        self.time_embedder = TimestepEmbedder(hidden)
        self.vae2llm = nn.Linear(config.latent_token_dim, hidden)
        self.llm2vae = nn.Linear(hidden, config.latent_token_dim)
        self.latent_pos_embed = PositionTable(config.max_latent_size, hidden)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute every decoder layer and every SigLIP layer in the backward instead of keeping their
        activations (training at real size needs it; the official trainer checkpoints both)."""
        self.language_model.model.gradient_checkpointing = enabled
        self.vit_model.gradient_checkpointing = enabled

    @property
    def dtype(self) -> torch.dtype:
        return self.vae2llm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.vae2llm.weight.device

    def init_weights(self, generator: torch.Generator, std: float = 0.02) -> None:
        """Random weights (normal ``std``; norms one, biases zero, fixed sin-cos tables) from ``generator``,
        which must live on the parameters' device (drawing 14B values on a CPU would take minutes)."""
        with torch.no_grad():
            for name, p in sorted(self.named_parameters(), key=lambda kv: kv[0]):
                if name.endswith("pos_embed"):
                    continue
                if "norm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, std, generator=generator)
            self.vit_pos_embed.reset_parameters()
            self.latent_pos_embed.reset_parameters()

    # -- embeddings of the three token kinds -------------------------------------------------------------

    def embed_text(self, ids: Tensor) -> Tensor:
        return self.language_model.model.embed_tokens(ids)

    def embed_vit(self, patches: Tensor, position_ids: Tensor, seqlens: list[int]) -> tuple[Tensor, Tensor]:
        """ViT patches → (LLM-width embeddings, raw SigLIP features)."""
        feats = self.vit_model(patches.to(self.dtype), position_ids, seqlens)
        return self.connector(feats) + self.vit_pos_embed(position_ids), feats

    def embed_latents(self, tokens: Tensor, positions: Tensor, t: Tensor | float) -> Tensor:
        """Latent patches [N, latent_dim] at flow times t ([N], or one float for all) → LLM-width embeddings.

        ``positions`` are grid ids [N], or their already looked-up table rows [N, hidden] (reused by the
        sampler across steps).
        """
        if isinstance(t, float):
            # One shared time: embed it once instead of once per token.
            time = self.time_embedder(torch.tensor([t], device=tokens.device))
        else:
            time = self.time_embedder(t)
        pos = self.latent_pos_embed(positions) if positions.dim() == 1 else positions
        return self.vae2llm(tokens.to(self.dtype)) + time + pos

    def latent_tokens(self, latents: list[Tensor], grids: list[tuple[int, int]]) -> Tensor:
        """Scaled VAE latents [z, H/8, W/8] → packed 2×2 latent patches [N, latent_dim]."""
        p = self.config.latent_patch_size
        return torch.cat(
            [patchify(z[:, : h * p, : w * p], p) for z, (h, w) in zip(latents, grids, strict=True)]
        )

    def run_llm(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        route: Route,
        attention: Attention,
        hidden_layers: Collection[int] = (),
    ) -> tuple[Tensor, dict[int, Tensor]]:
        return self.language_model.model(x, rope, route, attention, hidden_layers)

    # -- training pass ----------------------------------------------------------------------------------

    def encode_images(
        self,
        vae: FluxVAE,
        images: list[Tensor],
        generator: torch.Generator | None = None,
        batching: str = "per_image",
    ) -> list[Tensor]:
        """VAE latents of images [3, H, W].

        ``per_image`` encodes each image alone. ``padded`` reproduces the official trainer: all images
        zero-padded bottom-right to the largest height and width and encoded as one batch; each latent then
        keeps the padded size (the forward crops it to the image's grid). The padding reaches into the
        latents near the right and bottom edges and, through the VAE's attention block, everywhere.
        """
        with torch.no_grad():
            if batching == "per_image":
                return [
                    vae.encode(img[None].to(self.device, vae.dtype), generator=generator)[0] for img in images
                ]
            if batching != "padded":
                raise ValueError(f"unknown VAE batching {batching!r}")
            height, width = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
            padded = images[0].new_zeros((len(images), 3, height, width))
            for k, img in enumerate(images):
                padded[k, :, : img.shape[1], : img.shape[2]] = img
            return list(vae.encode(padded.to(self.device, vae.dtype), generator=generator))

    def forward(
        self,
        batch: PackedBatch,
        *,
        vae: FluxVAE | None = None,
        latents: list[Tensor] | None = None,
        noise: Tensor | None = None,
        hidden_layers: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> BagelOutput:
        """One pass over a pack; see the package docstring for the training recipe.

        VAE images are encoded with ``vae`` unless their ``latents`` are given. ``noise`` (one row per
        VAE token, clean ones included) and undrawn timesteps come from ``generator`` when not given.
        """
        dev, cfg = self.device, self.config
        x = torch.zeros(batch.length, cfg.llm.hidden_size, device=dev, dtype=self.dtype)
        x = x.index_copy(0, batch.text_index, self.embed_text(batch.text_ids))
        vit_features: list[Tensor] = []
        if batch.vit_index is not None:
            emb, feats = self.embed_vit(batch.vit_patches, batch.vit_position_ids, batch.vit_seqlens)
            x = x.index_copy(0, batch.vit_index, emb.to(x.dtype))
            vit_features = list(feats.split(batch.vit_seqlens))
        gen_mask = torch.zeros(batch.length, dtype=torch.bool, device=dev)
        mse = mse_tok = velocity = None
        if batch.vae_index is not None:
            if latents is None:
                if vae is None:
                    raise ValueError("the batch has VAE images: pass vae= or latents=")
                latents = self.encode_images(vae, batch.vae_images, generator, batch.vae_batching)
            clean = self.latent_tokens(latents, batch.latent_grids).float()
            counts = [h * w for h, w in batch.latent_grids]
            t = self._token_timesteps(batch.timesteps, counts, generator).to(dev)
            if noise is None:
                noise = torch.randn(clean.shape, generator=generator).to(dev)
            noise = noise.to(dev, torch.float32)
            x_t = (1 - t[:, None]) * clean + t[:, None] * noise
            x = x.index_copy(
                0, batch.vae_index, self.embed_latents(x_t, batch.latent_position_ids, t).to(x.dtype)
            )
            gen_mask[batch.vae_index] = True
        segments = [
            segment
            for (start, _), lens, modes in zip(batch.samples, batch.split_lens, batch.attn_modes, strict=True)
            for segment in split_segments(start, lens, modes, dev)
        ]
        rope = self.language_model.model.rope(batch.position_ids.to(dev))
        final, hidden = self.run_llm(x, rope, Route(gen_mask), SegmentAttention(segments), hidden_layers)
        ce = ce_tok = None
        if batch.ce_index.numel():
            logits = self.language_model.lm_head(final[batch.ce_index.to(dev)]).float()
            ce_tok = F.cross_entropy(logits, batch.ce_labels.to(dev), reduction="none")
            ce = ce_tok.mean()
        if batch.vae_index is not None and (t > 0).any():
            noised = t > 0
            velocity = self.llm2vae(final[batch.vae_index.to(dev)[noised]]).float()
            mse_tok = (velocity - (noise - clean)[noised]).pow(2).mean(dim=-1)
            mse = mse_tok.mean()
        return BagelOutput(ce, mse, final, hidden, vit_features, ce_tok, mse_tok, velocity)

    def _token_timesteps(
        self, per_image: list[float | None], counts: list[int], generator: torch.Generator | None
    ) -> Tensor:
        values = []
        for t in per_image:
            if t is None:
                # Logit-normal draw, then the training shift (the official recipe).
                drawn = torch.sigmoid(torch.randn((), generator=generator))
                t = float(shift_timesteps(drawn, self.config.train_timestep_shift))
            values.append(t)
        return torch.cat([torch.full((n,), v) for v, n in zip(values, counts, strict=True)])
