"""Sequence plans and packs: split order, spans for the losses, CFG dropout, token budgets."""

from __future__ import annotations

import random

import torch

from groundedit.train.examples import EditExample
from groundedit.train.sequence import (
    DESCRIPTION_TEXT,
    EDITED_NOISED,
    GROUNDED_NOISED,
    GROUNDED_VIT,
    GROUNDING_TEXT,
    SequenceBuilder,
    build_pack,
    group_plans,
)
from groundedit.train.spec import SequenceSpec

from .conftest import COT, grounding_example, picture


def builder(components, **changes) -> SequenceBuilder:
    spec = SequenceSpec(**{"cfg_dropout": {"text": 0.0, "vit": 0.0, "vae": 0.0}, **changes})
    b = components.builder
    return SequenceBuilder(b.tokenizer, b.config, spec, "grounding mode", "edit mode")


def test_intercog_sequence_layout_and_spans(components):
    b = builder(components)
    plan = b.plan(grounding_example(), random.Random(0))
    assert plan.reasoning
    kinds = [(op.kind, op.role, op.loss) for op in plan.ops]
    assert kinds == [
        ("text", None, False),  # system prompt
        ("vae", None, False),  # source, clean
        ("vit", None, False),
        ("text", None, False),  # instruction
        ("text", GROUNDING_TEXT, True),
        ("noised", GROUNDED_NOISED, False),
        ("vae", None, False),  # grounded image, clean
        ("vit", GROUNDED_VIT, False),
        ("text", DESCRIPTION_TEXT, True),
        ("noised", EDITED_NOISED, False),
    ]
    pack = build_pack([plan], b.config, components.bagel.tokens)
    assert pack.batch.length == plan.n_tokens
    [sample] = pack.samples
    tok = b.tokenizer
    ids = pack.batch.text_ids[torch.searchsorted(pack.batch.text_index, sample.location_tokens)]
    assert tok.decode(ids.tolist()) == COT[1]
    grounding = tok.decode(
        pack.batch.text_ids[
            torch.searchsorted(pack.batch.text_index, sample.spans[GROUNDING_TEXT].tokens)
        ].tolist()
    )
    assert grounding.startswith("<think>") and COT[0] in grounding and grounding.endswith(COT[1])
    description = tok.decode(
        pack.batch.text_ids[
            torch.searchsorted(pack.batch.text_index, sample.spans[DESCRIPTION_TEXT].tokens)
        ].tolist()
    )
    assert COT[2] in description and COT[3] in description and description.endswith("</think>")
    # CE covers exactly the two reasoning texts (each token predicts the next, then <|im_end|>)
    n_text = len(sample.spans[GROUNDING_TEXT].tokens) + len(sample.spans[DESCRIPTION_TEXT].tokens)
    assert pack.batch.ce_index.numel() == n_text + 2
    # 64x48 images: 4x3 latent tokens, 56x42 ViT input: 4x3 SigLIP tokens
    assert len(sample.spans[GROUNDED_NOISED].tokens) == len(sample.spans[EDITED_NOISED].tokens) == 12
    assert len(sample.spans[GROUNDED_VIT].tokens) == 12
    # the noised grounded image shares its position with the clean copy that follows (official rule)
    pos = pack.batch.position_ids
    noised, clean = sample.spans[GROUNDED_NOISED], pack.batch.spans[6]
    assert clean.kind == "vae" and pos[noised.start] == pos[clean.start] == pos[clean.end - 1]
    assert plan.mask.shape == (48, 64) and plan.sam_image.shape == (48, 64, 3)


def test_cfg_dropout_drops_conditions_never_losses(components):
    b = builder(components, cfg_dropout={"text": 0.999, "vit": 0.999, "vae": 0.999})
    plan = b.plan(grounding_example(), random.Random(1))
    kinds = [op.kind for op in plan.ops]
    assert kinds == ["text", "skip", "skip", "text", "noised", "skip", "skip", "text", "noised"]
    assert [op.loss for op in plan.ops if op.kind == "text"] == [False, True, True]
    pack = build_pack([plan], b.config, components.bagel.tokens)
    assert GROUNDED_VIT not in pack.samples[0].spans
    # a dropped image keeps its position: the grounding text starts 2 positions after the system prompt
    system, grounding = pack.batch.spans[0], pack.samples[0].spans[GROUNDING_TEXT]
    assert pack.batch.position_ids[grounding.start] == pack.batch.position_ids[system.end - 1] + 1 + 2


def test_cfg_dropout_rates_follow_the_spec(components):
    b = builder(components, cfg_dropout={"text": 0.1, "vit": 0.3, "vae": 0.3})
    rng, image = random.Random(7), picture(0, (32, 32))
    n = 1000
    vae = vit = text = 0
    for _ in range(n):
        a, c = b._condition(image, rng)
        vae += a.kind == "skip"
        vit += c.kind == "skip"
        text += not b._instruction("x", rng)
    assert abs(vae / n - 0.3) < 0.05 and abs(vit / n - 0.3) < 0.05 and abs(text / n - 0.1) < 0.035


def test_plain_chain_and_reasoning_fraction(components):
    b = builder(components)
    images = [picture(i) for i in range(3)]
    chain = b.plan(EditExample("row", images, ["first", "second"]), random.Random(0))
    assert not chain.reasoning
    assert [(op.kind, op.role) for op in chain.ops] == [
        ("text", None),
        ("vae", None),
        ("vit", None),
        ("text", None),
        ("noised", None),
        ("vae", None),
        ("vit", None),
        ("text", None),
        ("noised", EDITED_NOISED),
    ]
    plain = builder(components, reasoning_fraction=0.0).plan(grounding_example(), random.Random(0))
    assert not plain.reasoning and plain.ops[0].ids == b.encode("edit mode")
    assert not any(op.loss for op in plain.ops)


def test_packs_respect_the_token_budget(components):
    b = builder(components)
    plans = [b.plan(grounding_example(f"k{i}", seed=i), random.Random(i)) for i in range(3)]
    size = plans[0].n_tokens
    groups = group_plans(plans, 2 * size + 5)
    assert [len(g) for g in groups] == [2, 1]
    assert [len(g) for g in group_plans(plans, size - 1)] == [1, 1, 1]  # over-long plans go alone
    pack = build_pack(groups[0], b.config, components.bagel.tokens)
    assert pack.batch.length == plans[0].n_tokens + plans[1].n_tokens
    assert [s.plan.key for s in pack.samples] == ["k0", "k1"]
    assert pack.batch.samples == [(0, plans[0].n_tokens), (plans[0].n_tokens, pack.batch.length)]
