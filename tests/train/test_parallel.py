"""FSDP2 precision and 8-bit AdamW in this process (a one-rank gloo group): bf16 compute parameters reach the
fp32 heads only under autocast (the spec refuses the other combination), and torchao's 8-bit AdamW steps
and checkpoints sharded parameters."""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from groundedit.specs import SpecError
from groundedit.train.errors import TrainError
from groundedit.train.optim import build_optimizer, eight_bit_backend
from groundedit.train.parallel import shard_bagel
from groundedit.train.sequence import build_pack
from groundedit.train.spec import load_train_spec
from groundedit.train.trainer import build_components, step_losses

from .conftest import grounding_example, no_dropout
from .test_plan import eager_torchao


@pytest.fixture
def one_rank(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_spec_refuses_bf16_shards_without_autocast():
    with pytest.raises(SpecError, match=r"fsdp_bf16 needs runtime\.autocast_bf16"):
        load_train_spec("tiny", overrides={"runtime": {"fsdp_bf16": True}})


def test_bf16_shards_train_under_autocast_only(one_rank):
    spec = load_train_spec("tiny", overrides=no_dropout())
    c = build_components(spec)
    c.bagel.model.train()
    shard_bagel(c.bagel.model, bf16=True)
    plans = [c.builder.plan(grounding_example(f"k{i}", seed=i), random.Random(i)) for i in range(2)]
    for i, plan in enumerate(plans):
        plan.draw = i
    pack = build_pack(plans, c.bagel.config, c.bagel.tokens)
    with pytest.raises(RuntimeError, match="dtype"):  # bf16 states into the fp32 heads
        step_losses(c, [pack], spec, "forward:0", backward=True)
    c.bagel.model.zero_grad(set_to_none=True)
    c.autocast = True  # what runtime.autocast_bf16 turns on (on CUDA; here on the CPU)
    loss, terms = step_losses(c, [pack], spec, "forward:0", backward=True)
    assert torch.isfinite(torch.tensor(loss)) and all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    layer = c.bagel.model.language_model.model.layers[0].mlp.up_proj.weight
    assert isinstance(layer, DTensor) and layer.dtype == torch.float32  # fp32 shards
    assert layer.grad is not None and layer.grad.dtype == torch.float32  # reduced in fp32
    assert all(p.grad is not None for p in c.heads.parameters() if p.requires_grad)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is the gpu extra")
def test_eight_bit_adamw_steps_and_checkpoints_sharded_parameters(one_rank, tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.fsdp import fully_shard

    eager_torchao(monkeypatch)
    spec = load_train_spec("tiny", overrides={"optim": {"eight_bit": True, "warmup_steps": 0}})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    fully_shard(model)
    optimizer = build_optimizer(list(model.parameters()), spec, torch.device("cpu"), sharded=True)
    before = model[0].weight.full_tensor().clone()
    for _ in range(2):
        model(torch.randn(8, 64)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(model[0].weight.full_tensor(), before)
    moment = optimizer.state[model[0].weight]["exp_avg"]
    assert isinstance(moment, DTensor) and type(moment.to_local()).__name__ == "OptimState8bit"

    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp_path / "dcp"))
    fresh = build_optimizer(list(model.parameters()), spec, torch.device("cpu"), sharded=True)
    model(torch.randn(8, 64)).pow(2).mean().backward()
    fresh.step()  # state of another trajectory, then overwritten by the checkpoint
    fresh.zero_grad()
    state = {"model": get_state_dict(model, fresh)[0], "optim": get_state_dict(model, fresh)[1]}
    dcp.load(state, checkpoint_id=str(tmp_path / "dcp"))
    set_state_dict(model, fresh, model_state_dict=state["model"], optim_state_dict=state["optim"])
    got = fresh.state[model[0].weight]["exp_avg"].to_local()
    assert torch.equal(got.dequantize(), moment.to_local().dequantize())


def test_eight_bit_without_torchao_is_refused_before_loading(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a)
    )
    with pytest.raises(TrainError, match=r"optim.eight_bit under FSDP2 \(--nproc-per-node\) needs torchao"):
        eight_bit_backend(torch.device("cpu"), sharded=True)
    with pytest.raises(TrainError, match=r"optim\.eight_bit on cpu needs torchao"):
        eight_bit_backend(torch.device("cpu"), sharded=False)
