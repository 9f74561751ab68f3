"""Where a chat model's weights go: one GPU, layers over several, or a refusal before any weight is read.

No GPU here: the planner is given the free memory of pretend GPUs (and accelerate is told that many
exist); the model is the tiny Qwen2.5-VL's meta skeleton, so sizes are the real architecture's.
"""

from __future__ import annotations

import pytest
import torch

from groundedit.models.chat.placement import PlacementError, meta_model, plan_placement, weight_bytes


@pytest.fixture(scope="module")
def tiny_vl():
    from transformers import AutoConfig, AutoModelForImageTextToText

    from groundedit.models.hub import resolve

    path = resolve("tiny://qwen2_5_vl")
    return path, AutoModelForImageTextToText, AutoConfig.from_pretrained(path)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_meta_skeleton_measures_what_loading_takes(tiny_vl):
    path, cls, config = tiny_vl
    skeleton = meta_model(cls, config, torch.bfloat16)
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    loaded = cls.from_pretrained(path, dtype=torch.bfloat16)
    real = sum(t.numel() * t.element_size() for t in [*loaded.parameters(), *loaded.buffers()])
    assert weight_bytes(skeleton, torch.bfloat16) == pytest.approx(real, rel=1e-3)
    assert weight_bytes(skeleton, torch.float32) == pytest.approx(2 * real, rel=1e-3)


def test_a_model_that_fits_one_gpu_stays_on_it(tiny_vl):
    _, cls, config = tiny_vl
    skeleton = meta_model(cls, config, torch.bfloat16)
    need = weight_bytes(skeleton, torch.bfloat16)
    placement = plan_placement(skeleton, torch.bfloat16, [need * 2, need * 2], "tiny")
    assert placement.device_map == {"": 0} and not placement.sharded


def test_a_model_too_big_for_one_gpu_is_split_by_whole_layers(tiny_vl, two_gpus):
    _, cls, config = tiny_vl
    skeleton = meta_model(cls, config, torch.bfloat16)
    need = weight_bytes(skeleton, torch.bfloat16)
    placement = plan_placement(skeleton, torch.bfloat16, [need, need], "tiny", weight_fraction=0.8)
    assert placement.sharded and set(placement.device_map.values()) == {0, 1}
    no_split = tuple(skeleton._no_split_modules)
    split_inside = [
        name
        for name, module in skeleton.named_modules()
        if type(module).__name__ in no_split and name not in placement.device_map
        if not any(name.startswith(f"{k}.") for k in placement.device_map if k)
    ]
    assert not split_inside, f"decoder/vision blocks split across GPUs: {split_inside[:3]}"


def test_a_model_too_big_for_every_gpu_is_refused_with_the_way_out(tiny_vl, two_gpus):
    _, cls, config = tiny_vl
    skeleton = meta_model(cls, config, torch.bfloat16)
    need = weight_bytes(skeleton, torch.bfloat16)
    with pytest.raises(PlacementError, match=r"2 GPU\(s\) this worker sees offer .*vLLM \(`backend: vllm`"):
        plan_placement(skeleton, torch.bfloat16, [need // 4, need // 4], "Qwen/Qwen2.5-VL-72B-Instruct")
    with pytest.raises(PlacementError, match="no GPU visible"):
        plan_placement(skeleton, torch.bfloat16, [], "tiny")


def test_backend_refuses_before_reading_weights(tiny_vl, monkeypatch):
    """The transformers backend on 'CUDA' with too little memory stops in setup, before from_pretrained."""
    from transformers import AutoModelForImageTextToText

    from groundedit.models.chat.transformers_backend import TransformersChatBackend

    path, _, _ = tiny_vl
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (1024, 1024))

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were read before the placement check")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", no_loading)
    backend = TransformersChatBackend(path, device="cuda")
    with pytest.raises(PlacementError, match=r"needs 0\.0 GiB of weights in bfloat16"):
        backend.setup()
