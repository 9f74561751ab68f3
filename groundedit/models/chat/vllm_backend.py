"""Chat backend on vLLM's offline engine (``vllm.LLM``), for GPU machines with the ``[vllm]`` extra.

vLLM is imported only in :meth:`VLLMChatBackend.setup` and :meth:`VLLMChatBackend.generate`;
constructing, pickling and the request/answer plumbing need no vLLM, so they are unit-tested
without it. Written against vLLM 0.32: ``LLM.chat`` with OpenAI-style messages (images as
``image_pil`` parts) and ``SamplingParams(structured_outputs=StructuredOutputsParams(...))``.

Inside a Ray actor: the executor reserves :attr:`VLLMChatBackend.required_gpus` GPUs for the actor
and vLLM's multiprocessing executor spreads the tensor-parallel workers over exactly those
(Ray sets ``CUDA_VISIBLE_DEVICES``); vLLM's own Ray executor would try to place workers itself,
outside the actor's reservation, so ``mp`` is the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groundedit.models.chat.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, prepare_image
from groundedit.models.chat.request import ChatRequest

# Qwen3 templates take this to answer directly, without a reasoning block; others ignore it.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


class VLLMChatBackend:
    """A chat model served by an in-process ``vllm.LLM``.

    ``tensor_parallel_size`` GPUs per instance (the stage's resources must reserve as many);
    ``limit_mm_per_prompt`` caps images per request (qc sends two); images are resized to fit
    ``min_pixels..max_pixels`` before vLLM sees them, and vLLM's processor gets the same bounds.
    ``engine_args`` passes any further ``vllm.LLM`` keyword through unchanged.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = 16384,
        limit_mm_per_prompt: dict[str, int] | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_num_seqs: int | None = None,
        distributed_executor_backend: str = "mp",
        seed: int = 0,
        engine_args: dict[str, Any] | None = None,
    ):
        if tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be >= 1")
        self.model_id = str(model)
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.limit_mm_per_prompt = dict(limit_mm_per_prompt or {"image": 2, "video": 0})
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self.max_num_seqs = max_num_seqs
        self.distributed_executor_backend = distributed_executor_backend
        self.seed = seed
        self.engine_args = dict(engine_args or {})
        self._llm: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # An engine never travels: each worker builds its own in setup().
        return {**self.__dict__, "_llm": None}

    @property
    def required_gpus(self) -> int:
        """GPUs one instance needs: the tensor-parallel size."""
        return self.tensor_parallel_size

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``."""
        kwargs: dict[str, Any] = {
            "model": self.model_id,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "seed": self.seed,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "limit_mm_per_prompt": self.limit_mm_per_prompt,
            "mm_processor_kwargs": {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels},
            "distributed_executor_backend": self.distributed_executor_backend,
            # Same grammar engine as the transformers backend, and compact JSON so that decoding
            # cannot wander in whitespace (vLLM applies this engine-wide with xgrammar).
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.max_num_seqs is not None:
            kwargs["max_num_seqs"] = self.max_num_seqs
        return {**kwargs, **self.engine_args}

    def setup(self) -> None:
        """Start the engine (loads weights onto the GPUs)."""
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(**self.engine_kwargs())

    def teardown(self) -> None:
        """Drop the engine; its worker processes exit with it."""
        self._llm = None

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        """The request as vLLM chat messages, images prepared and passed as PIL objects."""
        images = iter([prepare_image(im, self.min_pixels, self.max_pixels) for im in request.images])
        return request.messages(lambda _image: {"type": "image_pil", "image_pil": next(images)})

    @staticmethod
    def sampling_kwargs(request: ChatRequest) -> dict[str, Any]:
        """``SamplingParams`` keywords (without the constraint) for one request."""
        s = request.sampling
        return {
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }

    @staticmethod
    def structured_kwargs(request: ChatRequest) -> dict[str, Any] | None:
        """``StructuredOutputsParams`` keywords for the request's constraint, or None."""
        c = request.constraint
        if c is None:
            return None
        if c.json_schema is not None:
            return {"json": c.json_schema, "disable_any_whitespace": True}
        return {"regex": c.regex}

    def generate(self, requests: list[ChatRequest]) -> list[str]:
        """Raw replies, one per request, from one batched ``LLM.chat`` call."""
        if self._llm is None:
            raise RuntimeError(f"{type(self).__name__}({self.model_id!r}): call setup() first")
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = []
        for request in requests:
            structured = self.structured_kwargs(request)
            params.append(
                SamplingParams(
                    **self.sampling_kwargs(request),
                    structured_outputs=None if structured is None else StructuredOutputsParams(**structured),
                )
            )
        outputs = self._llm.chat(
            [self.messages(r) for r in requests],
            sampling_params=params,
            use_tqdm=False,
            chat_template_kwargs=CHAT_TEMPLATE_KWARGS,
        )
        return [reply_text(o) for o in outputs]


def reply_text(output: Any) -> str:
    """The text of a ``vllm.RequestOutput``'s first completion."""
    if not output.outputs:
        raise RuntimeError(f"vLLM returned no completion for request {getattr(output, 'request_id', '?')}")
    return output.outputs[0].text
