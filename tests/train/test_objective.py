"""One step's objective: every term present, gradients reach exactly the trained parameters."""

from __future__ import annotations

import math
import random

import pytest
import torch

from groundedit.train.examples import CaptionExample, ConversationExample, Utterance
from groundedit.train.objective import TERMS, pack_counts, pack_terms
from groundedit.train.sequence import SequenceBuilder, build_pack
from groundedit.train.spec import Freeze, GroundingSpec, SequenceSpec
from groundedit.train.trainer import apply_freezing, step_losses

from .conftest import grounding_example, no_dropout, picture


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


def _plans(components):
    """Three reasoning samples: nothing dropped; the text before the grounded image dropped (CFG's text-free
    branch: no textual grounding); both ViT copies dropped (no Lvv, and no CE: a condition before the texts
    is gone)."""
    builders = [
        components.builder,
        SequenceBuilder(*_builder_args(components, text=0.999)),
        SequenceBuilder(*_builder_args(components, vit=0.999)),
    ]
    plans = [b.plan(grounding_example(f"k{i}", seed=i), random.Random(i)) for i, b in enumerate(builders)]
    for i, plan in enumerate(plans):
        plan.draw = i
    return plans


def _builder_args(components, **drop):
    b = components.builder
    spec = SequenceSpec(cfg_dropout={"text": 0.0, "vit": 0.0, "vae": 0.0, **drop})
    return b.tokenizer, b.config, spec, "grounding mode", "edit mode"


def test_each_term_is_averaged_over_the_samples_that_have_it(components, tiny_spec):
    """Counts follow what each sample kept, and a step's terms are the unit-weighted means of its samples'
    terms: packing three samples together gives what each gives alone, combined by those counts."""
    plans = _plans(components)
    cfg, tokens = components.bagel.config, components.bagel.tokens
    together = build_pack(plans, cfg, tokens)
    counts = pack_counts(together)
    ce0 = sum(len(op.ids) + 1 for op in plans[0].ops if op.loss)  # only the sample that dropped nothing
    assert plans[1].location is None and not any(op.loss for p in plans[1:] for op in p.ops)
    assert counts == {
        "ce": ce0,
        "mse": 3 * 2 * 12,  # grounded + edited noised images, 4x3 tokens each
        "tv": 2,  # not the sample without textual grounding
        "vv": 2,  # not the sample whose grounded ViT copy was dropped
        "mask": 3,
        "mask_text": 2,
        "mask_grounded": 3,
        "mask_edited": 3,
    }
    with torch.no_grad():
        _, step = step_losses(components, [together], tiny_spec, "forward:0", backward=False)
        alone = [
            step_losses(components, [build_pack([p], cfg, tokens)], tiny_spec, "forward:0", backward=False)[1]
            for p in plans
        ]
    assert alone[1]["tv"] == alone[1]["mask_text"] == alone[2]["vv"] == alone[1]["ce"] == 0.0
    assert alone[1]["mask"] == pytest.approx(alone[1]["mask_grounded"] + alone[1]["mask_edited"], rel=1e-6)

    def mean(term, who):
        return sum(alone[i][term] for i in who) / len(who)

    expected = {
        "ce": alone[0]["ce"],
        "tv": mean("tv", (0, 2)),
        "vv": mean("vv", (0, 1)),
        "mask_text": mean("mask_text", (0, 2)),
        "mask_grounded": mean("mask_grounded", (0, 1, 2)),
        "mask_edited": mean("mask_edited", (0, 1, 2)),
        "mask": mean("mask", (0, 1, 2)),
        # MSE: a token mean; every sample has the same number of noised tokens
        "mse": mean("mse", (0, 1, 2)),
    }
    for term, value in expected.items():
        assert step[term] == pytest.approx(value, rel=2e-5, abs=1e-6), term
    assert all(step[t] != 0 for t in TERMS) and step["tv"] != mean("tv", (0, 1, 2))


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


def test_understanding_and_text_to_image_packs_carry_only_their_terms(components, tiny_spec):
    """An understanding pack trains CE only (no VAE image at all; text-only too), a text-to-image pack MSE
    only."""
    cfg, tokens = components.bagel.config, components.bagel.tokens
    talk = ConversationExample(
        "v", [picture(1, (40, 30))], [0, Utterance("What is it?", False), Utterance("A car.", True)]
    )
    caption = CaptionExample("c", picture(2), "a red car on a street")
    text_only = ConversationExample("t", [], [Utterance("Say hello.", False), Utterance("Hello.", True)])
    with torch.no_grad():
        for example, present in ((talk, {"ce"}), (text_only, {"ce"}), (caption, {"mse"})):
            pack = build_pack([components.builder.plan(example, random.Random(0))], cfg, tokens)
            _, terms = step_losses(components, [pack], tiny_spec, "forward:0", backward=False)
            assert {t for t in TERMS if terms[t] != 0} == present, example.key


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
