"""One step's objective: every term present, gradients reach exactly the trained parameters."""

from __future__ import annotations

import math
import random

import pytest
import torch

from groundedit.train.objective import MASK_PARTS, TERMS, pack_counts, pack_terms
from groundedit.train.sequence import build_pack
from groundedit.train.spec import Freeze, GroundingSpec
from groundedit.train.trainer import apply_freezing, step_losses

from .conftest import grounding_example, no_dropout


@pytest.fixture
def trained(components):
    """Components in training mode with the given freezing; everything restored afterwards."""
    model = components.bagel.model
    saved = {id(p): p.requires_grad for p in model.parameters()}

    def setup(freeze: Freeze):
        apply_freezing(components, freeze)
        model.train()
        return components

    yield setup
    for p in model.parameters():
        p.requires_grad_(saved[id(p)])
        p.grad = None
    for p in components.heads.parameters():
        p.grad = None
    model.eval()


def _pack(components, n=2):
    plans = [components.builder.plan(grounding_example(f"k{i}", seed=i), random.Random(i)) for i in range(n)]
    return build_pack(plans, components.bagel.config, components.bagel.tokens)


def _backward(components, spec):
    step_losses(components, [_pack(components)], spec, "forward:0", backward=True)


def test_every_term_with_its_unit_counts(components, tiny_spec):
    pack = _pack(components)
    counts = pack_counts(pack)
    assert counts["tv"] == counts["mask"] == counts["vv"] == 2
    assert counts["mse"] == 2 * 2 * 12  # grounded + edited noised images, 4x3 tokens each
    with torch.no_grad():
        out = components.bagel.model(
            pack.batch,
            vae=components.bagel.vae,
            hidden_layers={2},
            generator=torch.Generator().manual_seed(0),
        )
        terms = pack_terms(
            out, pack, components.heads, components.sam, GroundingSpec(align_layer=2), components.bagel.config
        )
    assert set(terms.sums) == {*TERMS, *MASK_PARTS}
    assert all(torch.isfinite(v) for v in terms.sums.values())
    assert terms.sums["mask"] == pytest.approx(sum(float(terms.sums[p]) for p in MASK_PARTS))
    assert -2 <= float(terms.sums["tv"]) <= 2 and -2 <= float(terms.sums["vv"]) <= 2  # two samples of [-1, 1]
    torch.testing.assert_close(terms.sums["ce"] / counts["ce"], out.ce)


def _grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


def test_gradients_reach_exactly_the_trained_parameters(trained, tiny_spec):
    c = trained(Freeze())
    _backward(c, tiny_spec)
    model, heads = c.bagel.model, c.heads
    for name, p in [*model.named_parameters(), *heads.named_parameters()]:
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        "vit_pos_embed.pos_embed",
        "latent_pos_embed.pos_embed",
    }
    assert any("moe_gen" in n for n in trainable) and any("mlp.gate_proj" in n for n in trainable)
    for part in ("tp", "vp", "pt", "pv", "mask_decoder.transformer", "mask_decoder.upscale_conv1"):
        assert any(
            n.startswith(part) and g is not None and g.abs().sum() > 0 for n, g in _grads(heads).items()
        ), part
    assert heads.no_mask_embed.grad.abs().sum() > 0
    # never the SAM encoder or the VAE
    assert all(not p.requires_grad and p.grad is None for p in c.sam.encoder.parameters())
    assert all(not p.requires_grad and p.grad is None for p in c.bagel.vae.parameters())


def test_freezing_the_understanding_expert_and_vit(trained, tiny_spec):
    c = trained(Freeze(und=True, vit=True))
    _backward(c, tiny_spec)
    for name, p in c.bagel.model.named_parameters():
        frozen = name.startswith(("vit_model.", "connector.")) or (
            name.startswith("language_model.") and "moe_gen" not in name
        )
        assert (p.grad is None) == (frozen or name.endswith("pos_embed")), name


def _leaf_outputs(c, pack, layer):
    """The forward's outputs with the aligned layer's states and the ViT features as leaves: a gradient
    on them comes only from how the terms read them."""
    with torch.no_grad():
        out = c.bagel.model(
            pack.batch, vae=c.bagel.vae, hidden_layers={layer}, generator=torch.Generator().manual_seed(0)
        )
    out.hidden_states = {layer: out.hidden_states[layer].clone().requires_grad_()}
    out.vit_features = [f.clone().requires_grad_() for f in out.vit_features]
    return out


@pytest.mark.parametrize("target", ["llm", "siglip"])
@pytest.mark.parametrize("detach", [False, True])
def test_alignment_targets_and_detach_targets(target, detach):
    """Lvv's target is the LM's states at the grounded ViT tokens (llm) or SigLIP's output (siglip); Ltv's
    is the target-location text. ``detach_targets`` stops the gradient into exactly those targets."""
    from groundedit.train.sequence import EDITED_NOISED, GROUNDED_VIT
    from groundedit.train.spec import load_train_spec
    from groundedit.train.trainer import build_components

    grounding = {"vv_target": target, "detach_targets": detach}
    spec = load_train_spec("tiny", overrides=no_dropout(grounding=grounding))
    c = build_components(spec)
    pack = _pack(c)
    layer = spec.grounding.align_layer
    out = _leaf_outputs(c, pack, layer)
    terms = pack_terms(out, pack, c.heads, c.sam, spec.grounding, c.bagel.config)
    sample = pack.samples[0]
    vit = sample.spans[GROUNDED_VIT]
    states = out.hidden_states[layer]
    g_states = torch.autograd.grad(terms.sums["vv"] + terms.sums["tv"], states, retain_graph=True)[0]
    g_features = torch.autograd.grad(terms.sums["vv"], out.vit_features[vit.image], allow_unused=True)[0]
    assert (g_states[sample.location_tokens].abs().sum() == 0) == detach  # Ltv's target
    if target == "llm":
        assert g_features is None  # SigLIP's output is not read
        assert (g_states[vit.tokens].abs().sum() == 0) == detach
    else:
        assert g_states[vit.tokens].abs().sum() == 0  # the LM's states there are not the target
        assert (g_features is None or g_features.abs().sum() == 0) == detach
    assert g_states[sample.spans[EDITED_NOISED].tokens].abs().sum() > 0  # the predicted side always trains


def test_mask_resolution_input_takes_the_bce_in_sams_input_frame(components, monkeypatch):
    import groundedit.train.objective as objective

    shapes = []
    real = objective.mask_bce
    monkeypatch.setattr(
        objective, "mask_bce", lambda lg, t: shapes.append((lg.shape, t.shape)) or real(lg, t)
    )
    pack = _pack(components)
    with torch.no_grad():
        out = components.bagel.model(
            pack.batch,
            vae=components.bagel.vae,
            hidden_layers={2},
            generator=torch.Generator().manual_seed(0),
        )
        sums, grids = {}, {}
        for resolution in ("decoder", "input"):
            shapes.clear()
            spec = GroundingSpec(align_layer=2, mask_resolution=resolution)
            terms = pack_terms(out, pack, components.heads, components.sam, spec, components.bagel.config)
            sums[resolution] = float(terms.sums["mask"])
            assert len(shapes) == 3 * 2 and len({s for pair in shapes for s in pair}) == 1, shapes
            grids[resolution] = tuple(shapes[0][0])
    assert grids["input"] == tuple(components.sam.frame) != grids["decoder"]
    assert all(math.isfinite(v) for v in sums.values())
