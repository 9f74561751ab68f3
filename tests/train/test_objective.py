"""One step's objective: every term present, gradients reach exactly the trained parameters."""

from __future__ import annotations

import random

import pytest
import torch

from groundedit.train.examples import CaptionExample, ConversationExample, Utterance
from groundedit.train.objective import TERMS, pack_counts
from groundedit.train.sequence import SequenceBuilder, build_pack
from groundedit.train.spec import Freeze, SequenceSpec
from groundedit.train.trainer import apply_freezing, step_losses

from .conftest import grounding_example, picture


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
