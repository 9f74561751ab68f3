"""The training pass: CE + flow MSE, hidden states at chosen layers and ViT features from one forward."""

from __future__ import annotations

import pytest
import torch

from groundedit.models.bagel import SequencePacker


def _batch(tiny):
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 64, 64, generator=g) * 2 - 1
    edited = torch.rand(3, 48, 64, generator=g) * 2 - 1
    enc = lambda s: tiny.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    p = SequencePacker(tiny.config, tiny.tokens)
    p.add_text(enc("You edit images."))
    p.add_vae_image(src)
    vit = p.add_vit_image(torch.nn.functional.interpolate(src[None], size=(56, 56))[0])
    p.add_text(enc("make the car blue"))
    think = p.add_text(enc("the car is on the left"), loss=True)
    target = p.add_vae_image(edited, noised=True)
    p.end_sample()
    p.add_text(enc("a second sample"), loss=True)
    p.end_sample()
    return p.build(), think, target, vit


def test_one_pass_gives_losses_hidden_states_and_vit_features(tiny):
    batch, think, target, vit = _batch(tiny)
    model = tiny.model
    model.train()
    try:
        out = model(batch, vae=tiny.vae, hidden_layers={0, 2, 4}, generator=torch.Generator().manual_seed(0))
        assert out.ce.ndim == 0 and out.mse.ndim == 0 and torch.isfinite(out.ce + out.mse)
        assert out.ce_per_token.shape == (batch.ce_index.numel(),)
        assert out.mse_per_token.shape == (target.tokens.numel(),)
        assert sorted(out.hidden_states) == [0, 2, 4]
        h2 = out.hidden_states[2]
        assert h2.shape == (batch.length, 64)
        assert h2[think.tokens].shape == (think.tokens.numel(), 64)
        assert h2[target.tokens].shape == (12, 64)  # 48x64 image -> 3x4 latent tokens
        assert [f.shape for f in out.vit_features] == [(16, 32)]  # 56x56 -> 4x4 SigLIP tokens, width 32
        assert out.velocity.shape == (12, 64)
        loss = out.ce + out.mse + h2[think.tokens].mean() + out.vit_features[vit.image].mean()
        loss.backward()
        grads = [
            model.llm2vae.weight.grad,
            model.language_model.model.layers[0].self_attn.q_proj_moe_gen.weight.grad,
        ]
        assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
        assert model.vit_model.vision_model.encoder.layers[0].mlp.fc1.weight.grad is not None
        assert model.latent_pos_embed.pos_embed.grad is None
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_seeded_pass_is_reproducible_and_checkpointing_changes_nothing(tiny):
    batch, *_ = _batch(tiny)
    model = tiny.model
    vit_layer = model.vit_model.vision_model.encoder.layers[0]
    llm_layer = model.language_model.model.layers[0]
    weights = (model.llm2vae.weight, vit_layer.mlp.fc1.weight, llm_layer.mlp.up_proj.weight)
    calls = []
    # A pre-hook: the recompute stops as soon as it has what the backward needs (no forward hook then).
    hooks = [m.register_forward_pre_hook(lambda m, i: calls.append(m)) for m in (vit_layer, llm_layer)]

    def run():
        calls.clear()
        out = model(batch, vae=tiny.vae, generator=torch.Generator().manual_seed(5))
        return out, torch.autograd.grad(out.ce + out.mse, weights)

    try:
        a, a_grads = run()
        b, _ = run()
        assert len(calls) == 2  # each layer ran once
        assert torch.equal(a.ce, b.ce) and torch.equal(a.mse, b.mse)
        model.set_gradient_checkpointing(True)
        c, c_grads = run()
        assert len(calls) == 4  # ... and again in the backward: both the ViT and the LM are recomputed
    finally:
        model.set_gradient_checkpointing(False)
        for h in hooks:
            h.remove()
    torch.testing.assert_close(c.final_hidden, a.final_hidden)
    for x, y in zip(c_grads, a_grads, strict=True):
        torch.testing.assert_close(x, y)
    assert all(float(g.abs().sum()) > 0 for g in c_grads)


def test_bad_requests_fail_clearly(tiny):
    batch, *_ = _batch(tiny)
    with pytest.raises(ValueError, match="out of range"):
        tiny.model(batch, vae=tiny.vae, hidden_layers={14})
    with pytest.raises(ValueError, match="pass vae= or latents="):
        tiny.model(batch)
