"""KV-cached decoding and denoising equal a full recompute of the packed sequence (float32, atol 1e-5)."""

from __future__ import annotations

import pytest
import torch

from groundedit.models.bagel import Context, Guidance, SequencePacker, denoise, extend, generate_text
from groundedit.models.bagel.context import text_split, vae_split, vit_split
from groundedit.models.bagel.denoise import guide

ATOL = 1e-5


def _inputs(tiny, seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    vae_image = torch.rand(3, size, size, generator=g) * 2 - 1
    vit_image = torch.rand(3, 56, 56, generator=g) * 2 - 1
    with torch.no_grad():
        latent = tiny.vae.encode(vae_image[None], sample=False)[0]
    prompt = tiny.tokenizer.encode("make the car on the left blue", add_special_tokens=False)
    return vae_image, vit_image, latent, prompt


def _contexts(tiny, latent, vit_image, prompt):
    m, tok = tiny.model, tiny.tokens
    empty = Context.empty(m)
    [ctx] = extend(m, [empty], [vae_split(m, latent, tok, 0)])
    [ctx] = extend(m, [ctx], [vit_split(m, vit_image, tok, ctx.rope)])
    [no_image] = extend(m, [empty], [text_split(m, prompt, tok, 0)])
    [full] = extend(m, [ctx], [text_split(m, prompt, tok, ctx.rope)])
    return full, ctx, no_image


@torch.no_grad()
def test_cached_text_decoding_equals_full_recompute(tiny):
    vae_image, vit_image, latent, prompt = _inputs(tiny)
    full, _, _ = _contexts(tiny, latent, vit_image, prompt)
    [ids], [logits] = generate_text(tiny.model, [full], tiny.tokens, max_new_tokens=6, return_logits=True)
    assert len(logits) >= 2

    p = SequencePacker(tiny.config, tiny.tokens)
    p.add_vae_image(vae_image)
    p.add_vit_image(vit_image)
    p.add_text(prompt)
    span = p.add_text(ids)
    p.end_sample()
    out = tiny.model(p.build(), latents=[latent])
    rows = torch.arange(span.start, span.start + len(logits))
    recomputed = tiny.model.language_model.lm_head(out.final_hidden[rows])
    torch.testing.assert_close(torch.stack(logits), recomputed, atol=ATOL, rtol=0)


def _recomputed_velocity(tiny, splits, vae_image, latent, noise, grid):
    """v of a noised image (t = 1, x_t = noise) after the given splits, by one uncached pass."""
    p = SequencePacker(tiny.config, tiny.tokens)
    latents, rows = [], [torch.zeros(0, noise.shape[1])]
    for kind, value in splits:
        if kind == "vae":
            p.add_vae_image(vae_image)
            latents.append(latent)
            rows.append(torch.zeros(grid[0] * grid[1], noise.shape[1]))
        elif kind == "vit":
            p.add_vit_image(value)
        else:
            p.add_text(value)
    p.add_vae_image(torch.zeros(3, 16 * grid[0], 16 * grid[1]), noised=True, timestep=1.0)
    p.end_sample()
    latents.append(torch.zeros(16, 2 * grid[0], 2 * grid[1]))
    out = tiny.model(p.build(), latents=latents, noise=torch.cat([*rows, noise]))
    return out.velocity


@pytest.mark.parametrize("cfg", [False, True])
@torch.no_grad()
def test_cached_denoising_equals_full_recompute(tiny, cfg):
    vae_image, vit_image, latent, prompt = _inputs(tiny, seed=1)
    contexts = _contexts(tiny, latent, vit_image, prompt)
    grid = (4, 4)
    noise = torch.randn(16, 64, generator=torch.Generator().manual_seed(3))
    guidance = Guidance(4.0, 2.0) if cfg else Guidance(1.0, 1.0)
    # Two steps = one Euler step from t=1 to t=0 with dt=1, so the step's velocity is noise - result.
    [x] = denoise(tiny.model, [list(contexts)], [grid], [noise], tiny.tokens, steps=2, guidance=guidance)
    v_cached = noise - x

    full = [("vae", None), ("vit", vit_image), ("text", prompt)]
    v = _recomputed_velocity(tiny, full, vae_image, latent, noise, grid)
    if cfg:
        v_text = _recomputed_velocity(tiny, full[:2], vae_image, latent, noise, grid)
        v_img = _recomputed_velocity(tiny, full[2:], vae_image, latent, noise, grid)
        v = guide(v, v_text, v_img, guidance)
    torch.testing.assert_close(v_cached, v, atol=ATOL, rtol=0)


@torch.no_grad()
def test_batched_denoising_equals_one_at_a_time(tiny):
    edits = []
    for seed, size in ((0, 64), (1, 32)):
        _, vit_image, latent, prompt = _inputs(tiny, seed=seed, size=size)
        grid = (size // 16, size // 16)
        noise = torch.randn(grid[0] * grid[1], 64, generator=torch.Generator().manual_seed(seed))
        edits.append((list(_contexts(tiny, latent, vit_image, prompt)), grid, noise))
    batched = denoise(tiny.model, *map(list, zip(*edits, strict=True)), tiny.tokens, steps=3)
    for (ctxs, grid, noise), got in zip(edits, batched, strict=True):
        [alone] = denoise(tiny.model, [ctxs], [grid], [noise], tiny.tokens, steps=3)
        torch.testing.assert_close(got, alone, atol=ATOL, rtol=0)
