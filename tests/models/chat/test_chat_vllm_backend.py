"""The vLLM backend without vLLM: a fake ``vllm`` module stands in at the import boundary."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types
from types import SimpleNamespace
from typing import ClassVar

import pytest

from groundedit.models.chat import (
    ChatRequest,
    QCAnswer,
    RewriteAnswer,
    Sampling,
    VLLMChatBackend,
    ask_validated,
    instruct_request,
    make_backend,
    qc_request,
    rewrite_request,
)

QC_REPLY = '{"RegionEditAccuracy":4.0,"SeamlessQuality":2.5}'


class FakeLLM:
    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.chat_calls: list[dict] = []
        self.replies: list[str] = []
        FakeLLM.instances.append(self)

    def chat(self, messages, sampling_params=None, **kwargs):
        self.chat_calls.append({"messages": messages, "sampling_params": sampling_params, **kwargs})
        texts = self.replies or [QC_REPLY] * len(messages)
        return [
            SimpleNamespace(request_id=str(i), outputs=[SimpleNamespace(text=t)]) for i, t in enumerate(texts)
        ]


class FakeSamplingParams(SimpleNamespace):
    pass


class FakeStructuredOutputsParams(SimpleNamespace):
    pass


@pytest.fixture
def fake_vllm(monkeypatch):
    FakeLLM.instances.clear()
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = FakeSamplingParams
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = FakeStructuredOutputsParams
    vllm.sampling_params = sampling_params
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    return vllm


def test_importing_and_building_needs_no_vllm():
    code = (
        "import sys\n"
        "from groundedit.models.chat import VLLMChatBackend, ChatRequest\n"
        "b = VLLMChatBackend('Qwen/Qwen2.5-VL-72B-Instruct', tensor_parallel_size=4)\n"
        "b.engine_kwargs(); b.messages(ChatRequest(system='s', user='u'))\n"
        "assert 'vllm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_arguments_reflect_the_spec():
    backend = VLLMChatBackend(
        "Qwen/Qwen2.5-VL-72B-Instruct",
        tensor_parallel_size=8,
        max_model_len=8192,
        min_pixels=3136,
        max_pixels=1003520,
        gpu_memory_utilization=0.85,
        max_num_seqs=64,
        engine_args={"enforce_eager": True, "dtype": "bfloat16"},
    )
    assert backend.required_gpus == 8
    kwargs = backend.engine_kwargs()
    assert kwargs["model"] == "Qwen/Qwen2.5-VL-72B-Instruct"
    assert kwargs["tensor_parallel_size"] == 8 and kwargs["distributed_executor_backend"] == "mp"
    assert kwargs["limit_mm_per_prompt"] == {"image": 2, "video": 0}
    assert kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 1003520}
    assert kwargs["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert (kwargs["max_model_len"], kwargs["max_num_seqs"], kwargs["gpu_memory_utilization"]) == (
        8192,
        64,
        0.85,
    )
    assert kwargs["enforce_eager"] is True and kwargs["dtype"] == "bfloat16"
    assert "max_model_len" not in VLLMChatBackend("m", max_model_len=None).engine_kwargs()


def test_setup_builds_one_engine_and_pickling_drops_it(fake_vllm):
    backend = make_backend("vllm", model="Qwen/Qwen2.5-VL-7B-Instruct", tensor_parallel_size=2)
    backend.setup()
    backend.setup()
    assert len(FakeLLM.instances) == 1 and FakeLLM.instances[0].kwargs == backend.engine_kwargs()
    assert pickle.loads(pickle.dumps(backend))._llm is None
    backend.teardown()
    with pytest.raises(RuntimeError, match="setup"):
        backend.generate([])


def test_requests_become_chat_messages_and_sampling_params(fake_vllm, templates, make_scene):
    backend = VLLMChatBackend("Qwen/Qwen2.5-VL-7B-Instruct", min_pixels=28 * 28, max_pixels=56 * 56 * 4)
    backend.setup()
    qc = qc_request(templates["qc"], make_scene(), make_scene(shift=5), "Remove the dog.", Sampling(seed=9))
    rewrite = rewrite_request(templates["rewrite"], "Remove the dog.", Sampling(seed=4, temperature=0.3))
    instruct = instruct_request(templates["instruct"], make_scene(), "replace", Sampling(max_new_tokens=2048))
    FakeLLM.instances[0].replies = [QC_REPLY, "Take the dog away.", "{}"]
    replies = backend.generate([qc, rewrite, instruct])
    assert replies == [QC_REPLY, "Take the dog away.", "{}"]

    [call] = FakeLLM.instances[0].chat_calls
    assert call["use_tqdm"] is False and call["chat_template_kwargs"] == {"enable_thinking": False}
    system, user = call["messages"][0]
    assert system == {"role": "system", "content": qc.system}
    parts = user["content"]
    assert [p["type"] for p in parts] == ["image_pil", "image_pil", "text"] and parts[2]["text"] == qc.user
    for part in parts[:2]:
        width, height = part["image_pil"].size
        assert width % 28 == 0 and height % 28 == 0 and width * height <= 56 * 56 * 4
    assert call["messages"][1][1] == {"role": "user", "content": rewrite.user}

    qc_params, rewrite_params, instruct_params = call["sampling_params"]
    assert (qc_params.seed, qc_params.max_tokens, qc_params.temperature) == (9, 512, 0.7)
    assert qc_params.structured_outputs.json == qc.constraint.json_schema
    assert qc_params.structured_outputs.disable_any_whitespace is True
    assert (
        rewrite_params.structured_outputs.regex == rewrite.constraint.regex
        and rewrite_params.temperature == 0.3
    )
    assert instruct_params.max_tokens == 2048
    assert instruct_params.structured_outputs.json["properties"]["Editing_Type"]["enum"] == ["replace"]
    json.dumps(instruct_params.structured_outputs.json)  # plain JSON, as vLLM expects


def test_unconstrained_request_has_no_structured_outputs(fake_vllm):
    backend = VLLMChatBackend("m")
    backend.setup()
    backend.generate([ChatRequest(system="s", user="u")])
    [params] = FakeLLM.instances[0].chat_calls[0]["sampling_params"]
    assert params.structured_outputs is None


def test_validated_asking_works_over_vllm(fake_vllm, templates, scene):
    backend = VLLMChatBackend("Qwen/Qwen3-8B")
    backend.setup()
    FakeLLM.instances[0].replies = ["First line\nsecond line"]
    request = rewrite_request(templates["rewrite"], "Remove the dog.", Sampling(seed=1))
    [failure] = ask_validated(backend, [request], RewriteAnswer, max_attempts=1)
    assert failure.reason == "not_one_line" and failure.model_id == "Qwen/Qwen3-8B"
    FakeLLM.instances[0].replies = []
    qc = qc_request(templates["qc"], scene, scene, "Remove the dog.", Sampling(seed=1))
    [answer] = ask_validated(backend, [qc], QCAnswer)
    assert answer.ok and answer.value.seamless_quality == 2.5


def test_a_missing_completion_is_an_error(fake_vllm):
    backend = VLLMChatBackend("m")
    backend.setup()
    FakeLLM.instances[0].chat = lambda *a, **k: [SimpleNamespace(request_id="0", outputs=[])]
    with pytest.raises(RuntimeError, match="no completion"):
        backend.generate([ChatRequest(system="s", user="u")])


def test_unknown_backend_kind():
    with pytest.raises(ValueError, match="unknown chat backend"):
        make_backend("onnx", model="m")
