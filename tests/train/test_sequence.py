"""Sequence plans and packs: split order, spans for the losses, CFG dropout and the CE rule, token budgets,
and the text-to-image and understanding sequences."""

from __future__ import annotations

import random
from collections import Counter

import torch

from groundedit.train.examples import CaptionExample, ConversationExample, EditExample, Utterance
from groundedit.train.sequence import (
    DESCRIPTION_TEXT,
    EDITED_NOISED,
    GROUNDED_NOISED,
    GROUNDED_VIT,
    GROUNDING_TEXT,
    INSTRUCTION,
    SequenceBuilder,
    build_pack,
    group_plans,
)
from groundedit.train.spec import SequenceSpec

from .conftest import COT, grounding_example, picture


def builder(components, text=0.0, vit=0.0, vae=0.0, **changes) -> SequenceBuilder:
    spec = SequenceSpec(**{"cfg_dropout": {"text": text, "vit": vit, "vae": vae}, **changes})
    b = components.builder
    return SequenceBuilder(b.tokenizer, b.config, spec, "grounding mode", "edit mode")


def decoded(b, pack, span) -> str:
    """The text of a span, read back from the pack's token ids."""
    return b.tokenizer.decode(
        pack.batch.text_ids[torch.searchsorted(pack.batch.text_index, span.tokens)].tolist()
    )


def test_intercog_sequence_layout_and_spans(components):
    b = builder(components)
    plan = b.plan(grounding_example(), random.Random(0))
    assert plan.reasoning
    kinds = [(op.kind, op.role, op.loss) for op in plan.ops]
    assert kinds == [
        ("text", None, False),  # system prompt
        ("vae", None, False),  # source, clean
        ("vit", None, False),
        ("text", INSTRUCTION, False),
        ("text", GROUNDING_TEXT, True),
        ("noised", GROUNDED_NOISED, False),
        ("vae", None, False),  # grounded image, clean
        ("vit", GROUNDED_VIT, False),
        ("text", DESCRIPTION_TEXT, True),
        ("noised", EDITED_NOISED, False),
    ]
    pack = build_pack([plan], b.config, components.bagel.tokens)
    assert pack.batch.length == plan.n_tokens == plan.full_tokens
    [sample] = pack.samples
    ids = pack.batch.text_ids[torch.searchsorted(pack.batch.text_index, sample.location_tokens)]
    assert b.tokenizer.decode(ids.tolist()) == COT[1]
    grounding = decoded(b, pack, sample.spans[GROUNDING_TEXT])
    assert grounding.startswith("<think>") and COT[0] in grounding and grounding.endswith(COT[1])
    description = decoded(b, pack, sample.spans[DESCRIPTION_TEXT])
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


def _ce_positions(pack, role) -> set[int]:
    span = pack.samples[0].spans[role]
    return set(range(span.start, span.end - 1))  # bos .. last id predict the next token


def test_a_dropped_source_leaves_no_ce_on_the_text_that_reads_it(components):
    """The official rule: no CE on a text when a condition before it was dropped."""
    ex = grounding_example()
    full = builder(components).plan(ex, random.Random(0))
    no_source_vit = builder(components, vit=0.999).plan(ex, random.Random(0))
    ops = {op.role: op for op in no_source_vit.ops if op.role}
    assert [op.kind for op in no_source_vit.ops[:3]] == ["text", "vae", "skip"]  # the source's ViT dropped
    assert ops[GROUNDING_TEXT].kind == "text" and not ops[GROUNDING_TEXT].loss  # the scene text: no CE
    assert ops[DESCRIPTION_TEXT].kind == "text" and not ops[DESCRIPTION_TEXT].loss
    pack = build_pack([no_source_vit], components.builder.config, components.bagel.tokens)
    assert pack.batch.ce_index.numel() == 0
    assert pack.samples[0].location_tokens is not None  # the text is still there for Ltv and Lmask
    # a dropped image keeps its position: the instruction starts 1 + 1 + 1 positions after the prompt
    system, instruction = pack.batch.spans[0], pack.batch.spans[2]
    assert instruction.kind == "text"
    assert pack.batch.position_ids[instruction.start] == pack.batch.position_ids[system.end - 1] + 3
    assert no_source_vit.full_tokens == full.n_tokens > no_source_vit.n_tokens

    # dropping only the grounded image's copies keeps CE on the grounding text, not on the description
    b = builder(components, vae=0.5)
    plans = (b.plan(ex, random.Random(seed)) for seed in range(100))
    plan = next(p for p in plans if p.ops[1].kind == "vae" and p.ops[6].kind == "skip")
    ops = {op.role: op for op in plan.ops if op.role}
    assert ops[GROUNDING_TEXT].loss and not ops[DESCRIPTION_TEXT].loss
    pack = build_pack([plan], b.config, components.bagel.tokens)
    assert set(pack.batch.ce_index.tolist()) == _ce_positions(pack, GROUNDING_TEXT)


def test_text_free_branch_is_the_one_inference_guides_with_and_comes_at_the_text_rate(components):
    """Official probabilities, 2000 draws with a fixed seed: the reasoning text before each generated image
    is dropped with the text probability (with the instruction, before the grounded image), CE follows."""
    b = builder(components, text=0.1, vit=0.3, vae=0.3)
    ex, n = grounding_example(size=(32, 32)), 2000
    rng = random.Random(7)
    counts: Counter = Counter()
    for _ in range(n):
        plan = b.plan(ex, rng)
        ops = {op.role: op for op in plan.ops if op.role}
        grounding, description = ops[GROUNDING_TEXT], ops[DESCRIPTION_TEXT]
        before_grounded = plan.ops[: plan.ops.index(ops[GROUNDED_NOISED])]
        if grounding.kind == "cut":
            counts["grounding_cut"] += 1
            # inference's text branch for the grounded image: system prompt and the source image, no text
            assert ops[INSTRUCTION].kind == "cut" and plan.location is None
            kept = [op.kind for op in before_grounded if op.kind not in ("skip", "cut")]
            assert kept[0] == "text" and set(kept[1:]) <= {"vae", "vit"}
        else:
            assert ops[INSTRUCTION].kind == "text"
        counts["description_cut"] += description.kind == "cut"
        counts["source_vae"] += plan.ops[1].kind == "skip"
        counts["grounded_vit"] += ops[GROUNDED_VIT].kind == "skip"
        counts["grounding_ce"] += grounding.loss
        counts["description_ce"] += description.loss
        # CE only where nothing before the text was dropped
        dropped_before = {
            role: any(op.kind in ("skip", "cut") for op in plan.ops[: plan.ops.index(ops[role])])
            for role in (GROUNDING_TEXT, DESCRIPTION_TEXT)
        }
        assert grounding.loss == (grounding.kind == "text" and not dropped_before[GROUNDING_TEXT])
        assert description.loss == (description.kind == "text" and not dropped_before[DESCRIPTION_TEXT])
    rate = {k: v / n for k, v in counts.items()}
    assert abs(rate["grounding_cut"] - 0.1) < 0.02 and abs(rate["description_cut"] - 0.1) < 0.02
    assert abs(rate["source_vae"] - 0.3) < 0.03 and abs(rate["grounded_vit"] - 0.3) < 0.03
    assert abs(rate["grounding_ce"] - 0.7 * 0.7 * 0.9) < 0.03  # nothing dropped before it
    assert abs(rate["description_ce"] - 0.7**4 * 0.9**2) < 0.03


def test_plain_chain_and_reasoning_fraction(components):
    b = builder(components)
    images = [picture(i) for i in range(3)]
    chain = b.plan(EditExample("row", images, ["first", "second"]), random.Random(0))
    assert not chain.reasoning
    assert [(op.kind, op.role) for op in chain.ops] == [
        ("text", None),
        ("vae", None),
        ("vit", None),
        ("text", INSTRUCTION),
        ("noised", None),
        ("vae", None),
        ("vit", None),
        ("text", INSTRUCTION),
        ("noised", EDITED_NOISED),
    ]
    plain = builder(components, reasoning_fraction=0.0).plan(grounding_example(), random.Random(0))
    assert not plain.reasoning and plain.ops[0].ids == b.encode("edit mode")
    assert not any(op.loss for op in plain.ops)
    # the instruction is the text before the generated image: dropped with the text probability, no trace
    cut = builder(components, text=0.999).plan(EditExample("row", images[:2], ["first"]), random.Random(0))
    assert [op.kind for op in cut.ops] == ["text", "vae", "vit", "cut", "noised"]
    assert cut.full_tokens == cut.n_tokens + len(b.encode("first")) + 2


def test_text_to_image_and_understanding_sequences(components):
    b = builder(components, text=0.999)
    t2i = b.plan(CaptionExample("c", picture(0), "a red car"), random.Random(0))
    assert [(op.kind, op.loss) for op in t2i.ops] == [("cut", False), ("noised", False)]
    kept = builder(components).plan(CaptionExample("c", picture(0), "a red car"), random.Random(0))
    assert [op.kind for op in kept.ops] == ["text", "noised"] and kept.ops[0].ids == b.encode("a red car")
    assert t2i.full_tokens == kept.n_tokens

    parts = [Utterance("What is left of", False), 0, Utterance("and", False), 1, Utterance("A car.", True)]
    talk = ConversationExample("v", [picture(1, (200, 100)), picture(2, (100, 100))], parts)
    plan = b.plan(talk, random.Random(0))  # understanding samples are never dropped, even at 0.999
    assert [(op.kind, op.loss) for op in plan.ops] == [
        ("text", False),
        ("vit", False),
        ("text", False),
        ("vit", False),
        ("text", True),
    ]
    pack = build_pack([plan], b.config, components.bagel.tokens)
    assert pack.batch.ce_index.numel() == len(b.encode("A car.")) + 1
    # the official rule shares the pixel cap among a sample's images (tiny ViT rule: 56 px long side)
    one = b.plan(
        ConversationExample("v", [picture(1, (200, 100))], [0, Utterance("x", True)]), random.Random(0)
    )
    assert tuple(one.ops[0].image.shape[1:]) == (28, 56)
    capped = builder(components, vlm_image={"max_size": 56, "min_size": 14, "stride": 14, "max_pixels": 1600})
    two = capped.plan(talk, random.Random(0))
    assert [tuple(op.image.shape[1:]) for op in two.ops if op.kind == "vit"] == [(14, 28), (14, 14)]


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
