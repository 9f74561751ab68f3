"""Chat models for the VLM stages: one backend protocol, prompts, answers and validated asking.

Import cost is kept low (pydantic and PIL only): torch, transformers, xgrammar and vLLM are imported
inside the backends' ``setup``/``generate``, so stages that hold a backend still pickle to workers.

Typical use in a stage::

    backend = make_backend(spec.backend, model=..., **backend_options)   # in __init__
    backend.setup()                                                      # in setup()
    template = load_prompt("instruct")
    requests = [instruct_request(template, boxed, edit_type, Sampling(seed=s)) for ...]
    results = ask_validated(backend, requests, InstructionAnswer, max_attempts=3,
                            contexts=[{"edit_type": t} for t in edit_types])
    # each result is an Answer (.value, .raw, .seeds, .model_id, .prompt_sha256, .sampling)
    # or a Failure (.reason, .detail, .raw, ...)
"""

from groundedit.models.chat.answers import (
    EDIT_TYPES,
    ChainOfThought,
    EditScoreAnswer,
    EditType,
    InstructionAnswer,
    QCAnswer,
    ReasoningAnswer,
    RegionAnswer,
    RewriteAnswer,
    SaliencyAnswer,
    box_text,
    mentions_marking,
)
from groundedit.models.chat.asking import Answer, Failure, FailureReason, ask_validated, attempt_seed
from groundedit.models.chat.backend import ChatBackend
from groundedit.models.chat.images import prepare_image, smart_resize
from groundedit.models.chat.prompts import PromptError, PromptTemplate, load_prompt
from groundedit.models.chat.registry import BACKENDS, make_backend
from groundedit.models.chat.request import ChatRequest, OutputConstraint, Sampling
from groundedit.models.chat.tasks import (
    TASK_ANSWERS,
    instruct_request,
    judge_request,
    qc_request,
    reasoning_request,
    region_request,
    rewrite_request,
    saliency_request,
)
from groundedit.models.chat.tiny import TINY_CHAT_MODELS, write_tiny_qwen3, write_tiny_qwen25_vl
from groundedit.models.chat.transformers_backend import TransformersChatBackend
from groundedit.models.chat.vllm_backend import VLLMChatBackend

__all__ = [
    "BACKENDS",
    "EDIT_TYPES",
    "TASK_ANSWERS",
    "TINY_CHAT_MODELS",
    "Answer",
    "ChainOfThought",
    "ChatBackend",
    "ChatRequest",
    "EditScoreAnswer",
    "EditType",
    "Failure",
    "FailureReason",
    "InstructionAnswer",
    "OutputConstraint",
    "PromptError",
    "PromptTemplate",
    "QCAnswer",
    "ReasoningAnswer",
    "RegionAnswer",
    "RewriteAnswer",
    "SaliencyAnswer",
    "Sampling",
    "TransformersChatBackend",
    "VLLMChatBackend",
    "ask_validated",
    "attempt_seed",
    "box_text",
    "instruct_request",
    "judge_request",
    "load_prompt",
    "make_backend",
    "mentions_marking",
    "prepare_image",
    "qc_request",
    "reasoning_request",
    "region_request",
    "rewrite_request",
    "saliency_request",
    "smart_resize",
    "write_tiny_qwen3",
    "write_tiny_qwen25_vl",
]
