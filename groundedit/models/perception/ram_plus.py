"""RAM++ (Recognize Anything Plus) as our own module: a transformers Swin backbone and a tagging head.

Architecture facts follow the official release (xinyu1205/recognize-anything, ``ram/models/ram_plus.py``):

- The Swin backbone's final tokens are layer-normed; their mean is prepended as a pooled token, and all
  ``1 + h*w`` tokens are projected to the description-embedding width (512) by ``image_proj``.
- Each tag owns ``descriptions_per_tag`` frozen text embeddings (official: 51 LLM descriptions, CLIP
  space, 512-d). They are mixed per image by a softmax over
  ``exp(reweight_scale) * normalise(pooled token) @ description``, then ``ReLU(wordvec_proj(.))`` turns
  the mixture into one 768-d query per tag.
- Two BERT-style layers with cross-attention only (no self-attention, no embeddings; the official code
  deletes both): queries are the tags, keys/values the projected image tokens. Post-norm residuals,
  GELU feed-forward, LayerNorm eps 1e-12, 4 heads.
- ``fc`` (768 -> 1) gives one logit per tag; sigmoid and a per-class threshold decide the tags.

The official code loops over the batch to mix descriptions; the einsum below computes the same sum.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class RamPlusConfig:
    """Sizes of a RAM++ model. Defaults are the released ``ram_plus_swin_large_14m`` (Swin-L, 384 px)."""

    num_tags: int = 4585
    image_size: int = 384
    patch_size: int = 4
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    descriptions_per_tag: int = 51
    text_width: int = 512
    head_hidden: int = 768
    head_layers: int = 2
    head_heads: int = 4
    head_ffn: int = 3072
    # ImageNet statistics, as in the official ``get_transform``.
    image_mean: tuple[float, ...] = field(default=(0.485, 0.456, 0.406))
    image_std: tuple[float, ...] = field(default=(0.229, 0.224, 0.225))

    @property
    def vision_width(self) -> int:
        """Channel width of the backbone's last stage (1536 for Swin-L)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def to_json(self, path: str | Path) -> None:
        """Write this config as JSON (the tiny profile stores it beside its checkpoint)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> RamPlusConfig:
        """Read a config written by :meth:`to_json`; unknown keys are an error."""
        raw = json.loads(Path(path).read_text())
        for key in ("depths", "num_heads", "image_mean", "image_std"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)


def swin_config(config: RamPlusConfig):
    """The transformers ``SwinConfig`` matching the official Swin of a RAM++ model."""
    from transformers import SwinConfig

    return SwinConfig(
        image_size=config.image_size,
        patch_size=config.patch_size,
        num_channels=3,
        embed_dim=config.embed_dim,
        depths=list(config.depths),
        num_heads=list(config.num_heads),
        window_size=config.window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        hidden_act="gelu",
        use_absolute_embeddings=False,
        layer_norm_eps=1e-5,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


class CrossAttentionLayer(nn.Module):
    """One tagging-head layer: multi-head cross-attention then a feed-forward block, both post-norm."""

    def __init__(self, hidden: int, kv_width: int, heads: int, ffn: int, eps: float = 1e-12):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"head hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(kv_width, hidden)
        self.v_proj = nn.Linear(kv_width, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            self._split(self.q_proj(queries)),
            self._split(self.k_proj(memory)),
            self._split(self.v_proj(memory)),
        )
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(queries.shape)
        x = self.attn_norm(self.out_proj(attended) + queries)
        return self.ffn_norm(self.ffn_out(F.gelu(self.ffn_in(x))) + x)


class RamPlus(nn.Module):
    """RAM++ image tagger: ``forward(pixels) -> logits`` of shape (batch, num_tags)."""

    def __init__(self, config: RamPlusConfig):
        super().__init__()
        from transformers import SwinModel

        self.config = config
        self.backbone = SwinModel(swin_config(config), add_pooling_layer=True)
        self.image_proj = nn.Linear(config.vision_width, config.text_width)
        self.label_embed = nn.Parameter(
            torch.zeros(config.num_tags * config.descriptions_per_tag, config.text_width)
        )
        self.reweight_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.wordvec_proj = nn.Linear(config.text_width, config.head_hidden)
        self.head = nn.ModuleList(
            CrossAttentionLayer(config.head_hidden, config.text_width, config.head_heads, config.head_ffn)
            for _ in range(config.head_layers)
        )
        self.fc = nn.Linear(config.head_hidden, 1)

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected image tokens (batch, 1 + h*w, text_width); token 0 is the mean-pooled one."""
        out = self.backbone(pixel_values=pixels)
        tokens = torch.cat([out.pooler_output[:, None], out.last_hidden_state], dim=1)
        return self.image_proj(tokens)

    def tag_queries(self, pooled: torch.Tensor) -> torch.Tensor:
        """One query per tag (batch, num_tags, head_hidden), from descriptions weighted by the image."""
        cfg = self.config
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        descriptions = self.label_embed.view(cfg.num_tags, cfg.descriptions_per_tag, cfg.text_width)
        similarity = self.reweight_scale.exp() * torch.einsum("bc,ndc->bnd", pooled, descriptions)
        weights = similarity.softmax(dim=-1)
        mixed = torch.einsum("bnd,ndc->bnc", weights, descriptions)
        return F.relu(self.wordvec_proj(mixed))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.image_tokens(pixels)
        queries = self.tag_queries(tokens[:, 0])
        for layer in self.head:
            queries = layer(queries, tokens)
        return self.fc(queries).squeeze(-1)
