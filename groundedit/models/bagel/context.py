"""KV-cached contexts: build them split by split, many sequences per forward, and decode text from them.

A :class:`Context` is the cache of one sequence prefix (per layer keys and values) plus the next position
id. :func:`extend` appends one split to each of several contexts in a single forward of the language
model; contexts are immutable, so two CFG branches can share a prefix without copying it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .attention import KVBuffer, Segment, SegmentAttention
from .blocks import grid_position_ids, patchify
from .model import Bagel
from .packing import SpecialTokens
from .qwen2_mot import Route


@dataclass(frozen=True)
class Context:
    """Cache of a sequence prefix: per-layer (keys, values) [length, kv_heads, head_dim]; next position."""

    kv: list[tuple[Tensor, Tensor]]
    length: int
    rope: int

    @classmethod
    def empty(cls, model: Bagel) -> Context:
        cfg = model.config.llm
        none = model.vae2llm.weight.new_empty((0, cfg.num_key_value_heads, cfg.head_dim))
        return cls([(none, none)] * cfg.num_hidden_layers, 0, 0)


@dataclass(frozen=True)
class Split:
    """One block of new tokens for a context: embeddings, position ids, expert routing, attention kind."""

    embeds: Tensor  # [L, hidden]
    positions: Tensor  # [L]
    gen_mask: Tensor  # [L] bool, True = generation expert
    causal: bool
    advance: int  # how far the next position id moves

    def __len__(self) -> int:
        return self.embeds.shape[0]


def text_split(model: Bagel, ids: list[int], tokens: SpecialTokens, rope: int) -> Split:
    """``<|im_start|> ids <|im_end|>``, causal, one position per token."""
    full = torch.tensor([tokens.bos, *ids, tokens.eos], device=model.device)
    n = full.numel()
    pos = torch.arange(rope, rope + n, device=model.device)
    return Split(model.embed_text(full), pos, torch.zeros(n, dtype=torch.bool, device=model.device), True, n)


def _image_split(model: Bagel, inner: Tensor, tokens: SpecialTokens, rope: int, gen: bool) -> Split:
    dev = model.device
    markers = model.embed_text(torch.tensor([tokens.start_of_image, tokens.end_of_image], device=dev))
    embeds = torch.cat([markers[:1], inner.to(markers.dtype), markers[1:]])
    n = embeds.shape[0]
    gen_mask = torch.zeros(n, dtype=torch.bool, device=dev)
    gen_mask[1:-1] = gen
    return Split(embeds, torch.full((n,), rope, device=dev), gen_mask, False, 1)


def vae_split(model: Bagel, latent: Tensor, tokens: SpecialTokens, rope: int) -> Split:
    """A clean VAE image (latent [z, H/8, W/8]) as a conditioning split for the generation expert."""
    p = model.config.latent_patch_size
    h, w = latent.shape[1] // p, latent.shape[2] // p
    pos = grid_position_ids(h, w, model.config.max_latent_size, model.device)
    inner = model.embed_latents(patchify(latent, p), pos, 0.0)
    return _image_split(model, inner, tokens, rope, gen=True)


def vit_split(model: Bagel, image: Tensor, tokens: SpecialTokens, rope: int) -> Split:
    """An image [3, H, W] (multiples of the patch size) through SigLIP as an understanding split."""
    p = model.config.vit.patch_size
    h, w = image.shape[1] // p, image.shape[2] // p
    pos = grid_position_ids(h, w, model.config.vit.max_patches_per_side, model.device)
    inner, _ = model.embed_vit(patchify(image.to(model.device), p), pos, [h * w])
    return _image_split(model, inner, tokens, rope, gen=False)


def extend(model: Bagel, contexts: list[Context], splits: list[Split]) -> list[Context]:
    """Append ``splits[i]`` to ``contexts[i]`` for all i in one forward; returns the new contexts."""
    cfg, dev = model.config.llm, model.device
    total = sum(c.length + len(s) for c, s in zip(contexts, splits, strict=True))
    buffer = KVBuffer(
        cfg.num_hidden_layers, total, cfg.num_key_value_heads, cfg.head_dim, model.vae2llm.weight
    )
    segments, rows, q0, k0 = [], [], 0, 0
    for ctx, split in zip(contexts, splits, strict=True):
        n = len(split)
        buffer.write(k0, ctx.kv)
        rows.append(torch.arange(k0 + ctx.length, k0 + ctx.length + n, device=dev))
        segments.append(Segment(slice(q0, q0 + n), slice(k0, k0 + ctx.length + n), causal=split.causal))
        q0, k0 = q0 + n, k0 + ctx.length + n
    x = torch.cat([s.embeds for s in splits])
    rope = model.language_model.model.rope(torch.cat([s.positions for s in splits]))
    route = Route(torch.cat([s.gen_mask for s in splits]))
    model.run_llm(x, rope, route, SegmentAttention(segments, buffer, torch.cat(rows)))
    return [
        Context(buffer.view(seg.k), ctx.length + len(split), ctx.rope + split.advance)
        for ctx, split, seg in zip(contexts, splits, segments, strict=True)
    ]


def generate_text(
    model: Bagel,
    contexts: list[Context],
    tokens: SpecialTokens,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
    on_token: Callable[[int], None] | None = None,
) -> list[list[int]] | tuple[list[list[int]], list[list[Tensor]]]:
    """Decode after each context, starting from ``<|im_start|>``, until ``<|im_end|>`` (not returned).

    All sequences decode together, one token per step, with keys cached; finished ones drop out.
    ``on_token(n)`` is called after each step with the steps taken so far.
    """
    cfg, dev = model.config.llm, model.device
    cap = [c.length + max_new_tokens for c in contexts]
    buffer = KVBuffer(
        cfg.num_hidden_layers, sum(cap), cfg.num_key_value_heads, cfg.head_dim, model.vae2llm.weight
    )
    starts = [sum(cap[:i]) for i in range(len(contexts))]
    for start, ctx in zip(starts, contexts, strict=True):
        buffer.write(start, ctx.kv)
    out: list[list[int]] = [[] for _ in contexts]
    logits_out: list[list[Tensor]] = [[] for _ in contexts]
    current = [tokens.bos] * len(contexts)
    active = list(range(len(contexts)))
    for step in range(max_new_tokens):
        ends = [starts[i] + contexts[i].length + step for i in active]
        segments = [
            Segment(slice(j, j + 1), slice(starts[i], end + 1))
            for j, (i, end) in enumerate(zip(active, ends, strict=True))
        ]
        x = model.embed_text(torch.tensor([current[i] for i in active], device=dev))
        pos = torch.tensor([contexts[i].rope + step for i in active], device=dev)
        attention = SegmentAttention(segments, buffer, torch.tensor(ends, device=dev))
        final, _ = model.run_llm(
            x, model.language_model.model.rope(pos), Route.understanding(len(active), dev), attention
        )
        logits = model.language_model.lm_head(final).float()
        if do_sample:
            probs = torch.softmax(logits / temperature, dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
        else:
            nxt = logits.argmax(dim=-1).tolist()
        still = []
        for j, i in enumerate(active):
            if return_logits:
                logits_out[i].append(logits[j])
            current[i] = nxt[j]
            if nxt[j] == tokens.eos:
                continue
            out[i].append(nxt[j])
            still.append(i)
        active = still
        if on_token is not None:
            on_token(step + 1)
        if not active:
            break
    return (out, logits_out) if return_logits else out
