"""One-GPU mode on CPU: LoRA adapters (peft) on both experts' projections, Bagel frozen, the grounding heads
trained in full; the exported checkpoint is base + (alpha / r) · B A and loads strictly."""

from __future__ import annotations

import json
import random
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from groundedit.models.bagel import BagelEditor
from groundedit.models.hub import resolve
from groundedit.train.logbook import read_metrics
from groundedit.train.lora import ADAPTER_DIR, add_lora, target_pattern
from groundedit.train.sequence import build_pack
from groundedit.train.spec import LoraSpec, load_train_spec
from groundedit.train.trainer import build_components, step_losses, train

from .conftest import grounding_example, no_dropout, sample_members, write_shard

LORA = {"enabled": True, "rank": 4, "alpha": 8.0}


def test_targets_cover_both_experts_and_only_the_language_model():
    pattern = re.compile(target_pattern(LoraSpec().targets))
    hit = "language_model.model.layers.{}.{}"
    for name in ("self_attn.q_proj", "self_attn.o_proj_moe_gen", "mlp.gate_proj", "mlp_moe_gen.down_proj"):
        assert pattern.fullmatch(hit.format(3, name)), name
    for name in (
        "vit_model.vision_model.encoder.layers.0.self_attn.q_proj",
        "language_model.model.layers.0.self_attn.q_norm",
        "language_model.lm_head",
    ):
        assert not pattern.fullmatch(name), name


def test_only_adapters_and_heads_get_gradients(tiny_spec):
    c = build_components(tiny_spec)
    adapted = add_lora(c.bagel.model, LoraSpec(**LORA))
    assert len(adapted) == 4 * 7 * 2  # layers × projections × experts
    c.bagel.model.train()
    plans = [c.builder.plan(grounding_example(f"k{i}", seed=i), random.Random(i)) for i in range(2)]
    for i, plan in enumerate(plans):
        plan.draw = i
    pack = build_pack(plans, c.bagel.config, c.bagel.tokens)
    step_losses(c, [pack], tiny_spec, "forward:0", backward=True)
    with_grad = {n for n, p in c.bagel.model.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, _ in c.bagel.model.named_parameters() if ".lora_" in n}
    assert all(not p.requires_grad for n, p in c.bagel.model.named_parameters() if ".lora_" not in n)
    # lora_B starts at zero, so lora_A's first gradient is zero; lora_B's is not
    assert any(float(p.grad.abs().sum()) > 0 for n, p in c.bagel.model.named_parameters() if "lora_B" in n)
    heads = [p for p in c.heads.parameters() if p.requires_grad]
    assert heads and all(p.grad is not None for p in heads)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    write_shard(d / "data" / "a.tar", {f"s{i}": sample_members(f"s{i}", seed=i) for i in range(4)})
    optim = {"warmup_steps": 0, "ema_decay": 0.5}  # an EMA of the adapters: model/ is merged from it
    spec = load_train_spec("tiny", overrides=no_dropout(max_steps=2, lora={**LORA, "lr": 0.05}, optim=optim))
    train(spec, [str(d / "data")], d / "out")
    return d / "out", spec


def test_merged_checkpoint_is_base_plus_scaled_ba_and_loads_strictly(lora_run):
    lora_run, _ = lora_run
    merged = load_file(str(lora_run / "model" / "ema.safetensors"))
    base = load_file(str(resolve("tiny://bagel")) + "/ema.safetensors")
    adapter = load_file(str(lora_run / "model" / ADAPTER_DIR / "adapter_model.safetensors"))
    assert merged.keys() == base.keys()
    scale = LORA["alpha"] / LORA["rank"]
    adapted = {k.rsplit(".lora_A.weight", 1)[0] for k in adapter if k.endswith(".lora_A.weight")}
    assert len(adapted) == 4 * 7 * 2
    for name in adapted:
        b, a = adapter[f"{name}.lora_B.weight"], adapter[f"{name}.lora_A.weight"]
        assert float(b.abs().max()) > 0, f"{name}: the adapter trained"
        want = base[f"{name}.weight"] + scale * b @ a
        torch.testing.assert_close(merged[f"{name}.weight"], want, rtol=0, atol=1e-6)
    for key in base.keys() - {f"{n}.weight" for n in adapted}:
        assert torch.equal(merged[key], base[key]), f"{key} is frozen"
    BagelEditor.from_pretrained(lora_run / "model", device="cpu")  # strict keys and shapes
    # the exported adapter is the EMA of the adapters (the checkpoint's averages), not the last weights
    averages = load_file(str(lora_run / "checkpoints" / "step-0000002" / "ema.safetensors"))
    trained = load_file(str(lora_run / "checkpoints" / "step-0000002" / "bagel.safetensors"))
    assert averages.keys() == trained.keys() and all(".lora_" in k for k in averages)
    for key, value in averages.items():
        peft_key = key.replace(".default.", ".")
        assert torch.equal(adapter[peft_key], value), key
        assert not torch.equal(value, trained[key]) or "lora_A" in key  # lora_B moved, its average lags


def test_lora_checkpoints_hold_the_adapters_only_and_resume(lora_run, tmp_path):
    out, spec = lora_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    saved = load_file(str(run / "checkpoints" / "step-0000002" / "bagel.safetensors"))
    assert saved and all(".lora_" in k for k in saved)
    longer = spec.model_copy(update={"max_steps": 3})
    data = json.loads((run / "run.json").read_text())["data"]
    train(longer, data, run, resume=True)
    train(longer, data, tmp_path / "straight")
    timing = {"seconds", "tokens_per_s"}
    got, want = read_metrics(run), read_metrics(tmp_path / "straight")
    assert [r["step"] for r in got] == [1, 2, 3]
    assert [{k: v for k, v in r.items() if k not in timing} for r in got] == [
        {k: v for k, v in r.items() if k not in timing} for r in want
    ], "a resumed LoRA run repeats the uninterrupted one"
