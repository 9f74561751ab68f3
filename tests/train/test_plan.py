"""``groundedit train --plan``: counts and bytes from the parameter shapes, token lengths from --data."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from groundedit.cli import main
from groundedit.models.bagel import BagelConfig
from groundedit.models.bagel.loading import official_entries
from groundedit.train.data import DataMixture
from groundedit.train.memory import GIB, shard_numel
from groundedit.train.plan import make_plan, meta_models
from groundedit.train.spec import load_train_spec

from .conftest import sample_members, write_shard


def bagel_7b_parameters(c: BagelConfig) -> int:
    """Bagel-7B-MoT's parameter count written out from its config (the official numbers)."""
    llm, vit = c.llm, c.vit
    d, dq, dkv, f, hd = llm.hidden_size, llm.hidden_size, 512, llm.intermediate_size, llm.head_dim
    attention = (d * dq + dq) + 2 * (d * dkv + dkv) + dq * d + 2 * hd  # q, k, v (biases), o, q/k norms
    expert = attention + 3 * d * f + 2 * d  # + SiLU-gated MLP + two norms
    lm = llm.num_hidden_layers * 2 * expert + 2 * llm.vocab_size * d + 2 * d  # embeddings, lm_head, norms
    dv, fv = vit.hidden_size, vit.intermediate_size
    vit_layer = 4 * (dv * dv + dv) + 2 * 2 * dv + (dv * fv + fv) + (fv * dv + dv)
    siglip = (3 * 14 * 14 * dv + dv) + 70 * 70 * dv + vit.layers_used * vit_layer + 2 * dv
    glue = (dv * d + d) + (d * d + d) + 70 * 70 * d  # connector, vit_pos_embed
    glue += (
        (256 * d + d) + (d * d + d) + (64 * d + d) + (d * 64 + 64) + 64 * 64 * d
    )  # time, vae2llm/llm2vae, latent pos
    return lm + siglip + glue


def test_real_size_counts_and_bytes_follow_the_parameter_shapes():
    config = BagelConfig()
    total = bagel_7b_parameters(config)
    assert 14.0e9 < total < 15.0e9  # the model card: "7B active, 14B total" (the LM; SigLIP adds 0.4B)
    entries = official_entries(config, torch.float32)
    assert sum(math.prod(s) for _, s, _ in entries) == total

    full = load_train_spec()
    one, eight = make_plan(full, [], 1), make_plan(full, [], 8)
    bagel_parts = {
        k: v
        for k, v in one.parameters.items()
        if k not in {"VAE (frozen)", "SAM encoder (frozen)", "grounding heads"}
    }
    assert sum(bagel_parts.values()) == total
    trainable = [(n, s) for n, s, _ in entries if not n.endswith("pos_embed")]
    heads = one.trainable - sum(math.prod(s) for _, s in trainable)
    assert one.memory["weights"] == 4 * total
    assert one.memory["optimizer"] == 8 * (sum(math.prod(s) for _, s in trainable) + heads)
    assert eight.memory["weights"] == sum(4 * -(-s[0] // 8) * math.prod(s[1:]) for _, s, _ in entries)
    sharded = sum(-(-s[0] // 8) * math.prod(s[1:]) for _, s in trainable)
    assert eight.memory["optimizer"] == 8 * (sharded + heads)
    assert not one.fits and eight.fits  # 14B in fp32 with AdamW needs ~250 GiB on one GPU

    lora = make_plan(
        load_train_spec(overrides={"lora": {"enabled": True}, "optim": {"eight_bit": True}}), [], 1
    )
    r, layers = 16, config.llm.num_hidden_layers
    d, f = config.llm.hidden_size, config.llm.intermediate_size
    per_expert = r * (
        (d + d) + 2 * (d + 512) + (d + d) + 3 * (d + f)
    )  # A (r x in) + B (out x r) per projection
    adapters = 2 * layers * per_expert
    assert lora.parameters["lora adapters"] == adapters
    assert lora.memory["weights"] == 2 * total + 4 * adapters  # frozen base in bf16, adapters in fp32
    assert lora.fits and lora.total < 48 * GIB


def eager_torchao(monkeypatch) -> None:
    """torchao compiles its optimizer step (a minute of C++ compilation on a CPU): run it eagerly."""
    monkeypatch.setattr(torch, "compile", lambda fn=None, **_: fn if fn is not None else (lambda f: f))


def _optimizer_bytes(optimizer) -> int:
    """Device bytes of a real optimizer's state: torch's moments; torchao's codes, scales, tables, step."""
    total = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if key == "step" and type(optimizer).__module__.startswith("torch.optim"):
                continue  # torch's step counters live on the CPU
            parts = [getattr(value, n) for n in ("codes", "scale", "qmap") if hasattr(value, n)] or [value]
            total += sum(t.nbytes for t in parts)
    return total


@pytest.mark.parametrize("mode", ["full", "lora+8bit"])
def test_tiny_plan_bytes_equal_the_real_model_and_optimizer(mode, monkeypatch):
    """The tiny model built for real, its real optimizer after one step: the plan's bytes, to the byte."""
    from groundedit.train.lora import add_lora
    from groundedit.train.optim import build_optimizer
    from groundedit.train.trainer import build_components

    overrides = {"lora": {"enabled": True}, "optim": {"eight_bit": True}} if mode != "full" else {}
    if mode != "full":
        pytest.importorskip("torchao")
        eager_torchao(monkeypatch)
    spec = load_train_spec("tiny", overrides=overrides)
    c = build_components(spec)
    model = c.bagel.model
    if spec.lora.enabled:
        add_lora(model, spec.lora)
    params = [p for p in [*model.parameters(), *c.heads.parameters()] if p.requires_grad]
    optimizer = build_optimizer(params, spec, c.device)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    plan = make_plan(spec, [], 1)
    assert plan.memory["optimizer"] == _optimizer_bytes(optimizer)
    assert plan.memory["weights"] == sum(p.nbytes for p in model.parameters())
    assert plan.trainable == sum(p.numel() for p in params)


def test_token_lengths_are_read_from_the_data_as_training_plans_them(tmp_path, capsys):
    from groundedit.train.trainer import build_components

    sizes = [(64, 48), (96, 64), (128, 96), (48, 48), (160, 96), (80, 80)]
    shard = write_shard(
        tmp_path / "d" / "a.tar",
        {f"s{i}": sample_members(f"s{i}", size, seed=i) for i, size in enumerate(sizes)},
    )
    spec = load_train_spec("tiny")
    c = build_components(spec)
    data = DataMixture.from_args([str(shard)], seed=spec.seed)
    lengths = []
    for _ in range(10):
        draw, example = data.next()
        # the budget is checked on a sample's length with nothing dropped (CFG dropout would vary it)
        lengths.append(c.builder.plan(example, random.Random(f"{spec.seed}:sequence:{draw}")).full_tokens)
    assert len(set(lengths)) > 1  # the image sizes vary them

    limit = sorted(lengths)[6]
    plan = make_plan(
        load_train_spec("tiny", overrides={"max_tokens_per_sample": limit}), [str(shard)], 1, samples=10
    )
    t = plan.tokens
    assert (t.samples, t.min, t.max, t.too_long) == (
        10,
        min(lengths),
        max(lengths),
        sum(n > limit for n in lengths),
    )
    assert t.median == round(sorted(lengths)[4] / 2 + sorted(lengths)[5] / 2)
    assert t.tokenizer == "the model's"

    args = ["train", "--plan", "--profile", "tiny", "--data", str(shard), "--plan-samples", "10", "--json"]
    assert main([*args, "--gpu-memory", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)  # one JSON object, nothing else
    assert shown["tokens"]["max"] == max(lengths) and shown["fits"] is False
    assert main(["train", "--plan", "--profile", "tiny", "--nproc-per-node", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 process(es)" in text and "fits in 80 GiB" in text


def test_plan_needs_no_weights_and_refuses_what_it_cannot_know(capsys):
    models = meta_models(load_train_spec(), BagelConfig())
    assert all(p.device.type == "meta" for p in models.bagel.parameters())
    assert shard_numel((10, 3), 4) == 9 and shard_numel((3,), 4) == 1
    spec = load_train_spec(
        overrides={"models": {"bagel": "someone/unknown-bagel", "sam": "facebook/sam-vit-huge"}}
    )
    from groundedit.train.errors import TrainError

    with pytest.raises(TrainError, match="unknown-bagel is not a local Bagel folder"):
        make_plan(spec, [], 1)
    assert main(["train", "--plan", "--lora", "--nproc-per-node", "2"]) == 1
    assert "LoRA is the one-process mode" in capsys.readouterr().err
    assert main(["train", "--profile", "tiny"]) == 1
    assert "train needs --data and --out" in capsys.readouterr().err
