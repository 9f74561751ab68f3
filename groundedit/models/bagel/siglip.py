"""SigLIP NaViT: the understanding encoder, run on images of any size (multiples of the patch size).

Patches are embedded by a linear layer over 14×14×3 pixels (flattened row, column, channel, as the official
converted checkpoint stores it), plus a learned position table indexed by row*per_side+col; attention is
per image; the output is post-layernormed. Parameter names match the official state dict under the
``vit_model.`` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import ViTConfig


class SiglipAttention(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, seqlens: list[int]) -> Tensor:
        t = x.shape[0]
        q, k, v = (
            p(x).view(t, self.heads, self.head_dim).transpose(0, 1)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        outs, start = [], 0
        for n in seqlens:
            sl = slice(start, start + n)
            outs.append(F.scaled_dot_product_attention(q[None, :, sl], k[None, :, sl], v[None, :, sl])[0])
            start += n
        out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return self.out_proj(out.transpose(0, 1).reshape(t, -1))


class SiglipMLP(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipEncoderLayer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.self_attn = SiglipAttention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor, seqlens: list[int]) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), seqlens)
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(3 * cfg.patch_size**2, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_patches_per_side**2, cfg.hidden_size)

    def forward(self, patches: Tensor, position_ids: Tensor) -> Tensor:
        return self.patch_embedding(patches) + self.position_embedding(position_ids)


class SiglipEncoder(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(cfg) for _ in range(cfg.layers_used))


class SiglipVisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = SiglipEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class SiglipVisionModel(nn.Module):
    """``vit_model``: packed patches of several images in, one feature per patch out."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_model = SiglipVisionTransformer(cfg)
        self.gradient_checkpointing = False  # recompute each layer in the backward (as officially trained)

    def forward(self, patches: Tensor, position_ids: Tensor, seqlens: list[int]) -> Tensor:
        """patches [N, 3*p*p] of len(seqlens) images back to back, ids [N] → features [N, hidden]."""
        vm = self.vision_model
        x = vm.embeddings(patches, position_ids)
        for layer in vm.encoder.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, seqlens, use_reentrant=False)
            else:
                x = layer(x, seqlens)
        return vm.post_layernorm(x)
