"""Qwen2 mixture-of-transformers decoder: two experts per layer, one shared attention.

Every layer holds an understanding expert (text and ViT tokens) and a generation expert (VAE latent tokens,
clean or noised), each with its own q/k/v/o projections, q/k RMS norms, SiLU-gated MLP and input /
post-attention norms; the decoder has one final norm per expert. Embeddings and ``lm_head`` are shared.
Tokens of both kinds meet in one attention over the packed sequence (grouped-query, RoPE). Parameter names
match the official state dict under the ``language_model.`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .blocks import RMSNorm, apply_rope, rope_cos_sin, silu_mul
from .config import LLMConfig

Attention = Callable[[int, Tensor, Tensor, Tensor], Tensor]


class Route:
    """Which packed tokens use the generation expert; every other token uses the understanding expert."""

    # When one expert has at most this share of the tokens, the other expert runs on every row and the few
    # minority rows are overwritten: cheaper than gathering and scattering the large majority.
    OVERWRITE_SHARE = 1 / 16

    def __init__(self, gen_mask: Tensor) -> None:
        n_gen = int(gen_mask.sum())
        self.size = gen_mask.numel()
        self.kind = "und" if n_gen == 0 else "gen" if n_gen == self.size else "mixed"
        if self.kind == "mixed":
            self.gen_idx = gen_mask.nonzero().squeeze(1)
            self.und_idx = (~gen_mask).nonzero().squeeze(1)
            self.n_gen = n_gen
            # Row i of the packed order within [understanding rows; generation rows].
            order = torch.cat([self.und_idx, self.gen_idx])
            self.unsort = torch.empty_like(order).index_copy_(
                0, order, torch.arange(order.numel(), device=order.device)
            )

    @classmethod
    def understanding(cls, n: int, device: torch.device | None = None) -> Route:
        return cls(torch.zeros(n, dtype=torch.bool, device=device))

    def apply(self, x: Tensor, und: Callable, gen: Callable):
        """``und`` on understanding tokens, ``gen`` on generation tokens, in the packed order.

        The experts may return a tensor or a tuple of tensors (one row per token each).
        """
        if self.kind == "und":
            return und(x)
        if self.kind == "gen":
            return gen(x)
        n_und = self.size - self.n_gen
        if n_und <= self.OVERWRITE_SHARE * self.size:
            return _overwrite(gen(x), und(x.index_select(0, self.und_idx)), self.und_idx)
        if self.n_gen <= self.OVERWRITE_SHARE * self.size:
            return _overwrite(und(x), gen(x.index_select(0, self.gen_idx)), self.gen_idx)
        y_und = und(x.index_select(0, self.und_idx))
        y_gen = gen(x.index_select(0, self.gen_idx))
        if isinstance(y_gen, tuple):
            return tuple(self._merge(u, g) for u, g in zip(y_und, y_gen, strict=True))
        return self._merge(y_und, y_gen)

    def _merge(self, y_und: Tensor, y_gen: Tensor) -> Tensor:
        # A concatenation and a gather keep only indices for the backward; index_copy would keep both
        # experts' outputs (its derivative reads the source), a copy of every merged tensor per layer.
        return torch.cat([y_und, y_gen]).index_select(0, self.unsort)


def _overwrite(full, part, idx: Tensor):
    # In place only without autograd: an expert's backward may need the output we would overwrite.
    def put(f: Tensor, p: Tensor) -> Tensor:
        return f.index_copy(0, idx, p) if torch.is_grad_enabled() else f.index_copy_(0, idx, p)

    if isinstance(full, tuple):
        return tuple(put(f, p) for f, p in zip(full, part, strict=True))
    return put(full, part)


class Qwen2MLP(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


class MoTAttention(nn.Module):
    """Attention projections of both experts; the attention itself is delegated to the caller."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for suffix in ("", "_moe_gen"):
            setattr(self, f"q_proj{suffix}", nn.Linear(cfg.hidden_size, q_dim, bias=True))
            setattr(self, f"k_proj{suffix}", nn.Linear(cfg.hidden_size, kv_dim, bias=True))
            setattr(self, f"v_proj{suffix}", nn.Linear(cfg.hidden_size, kv_dim, bias=True))
            setattr(self, f"o_proj{suffix}", nn.Linear(q_dim, cfg.hidden_size, bias=False))
            setattr(self, f"q_norm{suffix}", RMSNorm(self.head_dim, cfg.rms_norm_eps))
            setattr(self, f"k_norm{suffix}", RMSNorm(self.head_dim, cfg.rms_norm_eps))

    def _qkv(self, h: Tensor, suffix: str) -> tuple[Tensor, Tensor, Tensor]:
        q = getattr(self, f"q_proj{suffix}")(h).view(-1, self.heads, self.head_dim)
        k = getattr(self, f"k_proj{suffix}")(h).view(-1, self.kv_heads, self.head_dim)
        v = getattr(self, f"v_proj{suffix}")(h).view(-1, self.kv_heads, self.head_dim)
        return getattr(self, f"q_norm{suffix}")(q), getattr(self, f"k_norm{suffix}")(k), v

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, route: Route, attention: Attention, layer: int
    ) -> Tensor:
        q, k, v = route.apply(x, lambda h: self._qkv(h, ""), lambda h: self._qkv(h, "_moe_gen"))
        out = attention(layer, apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        return route.apply(out.reshape(x.shape[0], -1), self.o_proj, self.o_proj_moe_gen)


class MoTDecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig, index: int) -> None:
        super().__init__()
        self.index = index
        self.self_attn = MoTAttention(cfg)
        self.mlp = Qwen2MLP(cfg.hidden_size, cfg.intermediate_size)
        self.mlp_moe_gen = Qwen2MLP(cfg.hidden_size, cfg.intermediate_size)
        for name in ("input_layernorm", "post_attention_layernorm"):
            setattr(self, name, RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))
            setattr(self, f"{name}_moe_gen", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, route: Route, attention: Attention) -> Tensor:
        h = route.apply(x, self.input_layernorm, self.input_layernorm_moe_gen)
        x = x + self.self_attn(h, cos, sin, route, attention, self.index)
        return x + route.apply(
            x,
            lambda t: self.mlp(self.post_attention_layernorm(t)),
            lambda t: self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(t)),
        )


class Qwen2MoTModel(nn.Module):
    """The decoder stack (``language_model.model``)."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(MoTDecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.norm_moe_gen = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.gradient_checkpointing = False

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        return rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        route: Route,
        attention: Attention,
        hidden_layers: Collection[int] = (),
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """Run the packed embeddings x [T, hidden] through all layers.

        Returns the final hidden states (each token normed by its expert's final norm) and, for every k in
        ``hidden_layers``, the residual stream after k layers (k=0: the input embeddings).
        """
        n = len(self.layers)
        bad = [k for k in hidden_layers if not 0 <= k <= n]
        if bad:
            raise ValueError(f"hidden layers {bad} out of range: this model has {n} layers (0..{n})")
        cos, sin = rope
        hidden = {0: x} if 0 in hidden_layers else {}
        for layer in self.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, route, attention, use_reentrant=False)
            else:
                x = layer(x, cos, sin, route, attention)
            if layer.index + 1 in hidden_layers:
                hidden[layer.index + 1] = x
        return route.apply(x, self.norm, self.norm_moe_gen), hidden


class Qwen2MoTForCausalLM(nn.Module):
    """Decoder plus the untied ``lm_head`` (``language_model``)."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.model = Qwen2MoTModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
