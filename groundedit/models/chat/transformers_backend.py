"""Chat backend on plain transformers: Qwen2.5-VL (images) or Qwen3 (text), batched and constrained.

Runs anywhere (CPU included), which is what the tiny profile, the tests and GPU boxes without vLLM
use. JSON and regex constraints are compiled with xgrammar for the model's own tokenizer and
applied per row by :class:`~groundedit.models.chat.hf_sampling.RowSampler`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundedit.models.chat.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, prepare_image
from groundedit.models.chat.request import ChatRequest, OutputConstraint


@dataclass
class _Loaded:
    """Everything ``setup`` loads; dropped when the backend is pickled or torn down."""

    model: Any
    tokenizer: Any
    image_processor: Any | None
    chat_template: str | None
    compiler: Any
    stop_ids: list[int]
    vocab_size: int
    device: Any
    dtype: Any


class TransformersChatBackend:
    """A chat model loaded with transformers; vision or text-only is read from its ``config.json``.

    ``model`` is a Hugging Face id or a local directory. ``device`` defaults to CUDA when present,
    ``dtype`` to bfloat16 on CUDA and float32 on CPU. On CUDA the weights go to one GPU when they fit
    in ``weight_fraction`` of its free memory, else layer by layer over every GPU the worker sees (a
    stage reserving 4 GPUs gets all 4); a model too large for all of them is refused before any
    weight is read, pointing at vLLM (``placement.plan_placement``). Images are resized to fit
    ``min_pixels..max_pixels`` (see ``images.prepare_image``); requests run ``batch_size`` at a time.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        batch_size: int = 8,
        grammar_threads: int = 4,
        weight_fraction: float = 0.8,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_id = str(model)
        self.device = device
        self.dtype = dtype
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.grammar_threads = grammar_threads
        self.weight_fraction = weight_fraction
        self._state: _Loaded | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A loaded model never travels: workers load their own in setup().
        return {**self.__dict__, "_state": None}

    @property
    def is_vision(self) -> bool:
        """Whether the loaded model takes images (only known after :meth:`setup`)."""
        return self._loaded().image_processor is not None

    def setup(self) -> None:
        """Load config, tokenizer, image processor (vision models), weights and the grammar compiler."""
        if self._state is not None:
            return
        import torch
        import xgrammar as xgr
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        config = AutoConfig.from_pretrained(self.model_id)
        vision = getattr(config, "vision_config", None) is not None
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = (
            getattr(torch, self.dtype)
            if self.dtype
            else (torch.bfloat16 if device.type == "cuda" else torch.float32)
        )
        tokenizer = AutoTokenizer.from_pretrained(self.model_id)
        tokenizer.padding_side = "left"  # decoder-only batches: new tokens must line up at the right
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model_cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        if device.type == "cuda":
            model = self._load_on_gpus(model_cls, config, dtype, device)
            device = model.get_input_embeddings().weight.device  # inputs go to the first shard
        else:
            model = model_cls.from_pretrained(self.model_id, dtype=dtype).to(device).eval()
        stop_ids = _stop_ids(tokenizer, model.generation_config)
        vocab_size = config.get_text_config().vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self._state = _Loaded(
            model=model,
            tokenizer=tokenizer,
            image_processor=_image_processor(self.model_id) if vision else None,
            chat_template=None if tokenizer.chat_template else _chat_template_file(self.model_id),
            compiler=xgr.GrammarCompiler(info, max_threads=self.grammar_threads),
            stop_ids=stop_ids,
            vocab_size=vocab_size,
            device=device,
            dtype=dtype,
        )

    def _load_on_gpus(self, model_cls: Any, config: Any, dtype: Any, device: Any) -> Any:
        """Load onto one GPU, or layer by layer over this worker's GPUs when one is too small; refuse
        before reading any weight when even all of them are (see ``placement``)."""
        import torch

        from groundedit.models.chat.placement import free_bytes, meta_model, plan_placement

        gpus = [device.index] if device.index is not None else list(range(torch.cuda.device_count()))
        placement = plan_placement(
            meta_model(model_cls, config, dtype), dtype, free_bytes(gpus), self.model_id, self.weight_fraction
        )
        device_map = {name: gpus[i] for name, i in placement.device_map.items()}
        return model_cls.from_pretrained(self.model_id, dtype=dtype, device_map=device_map).eval()

    def teardown(self) -> None:
        """Drop the model and free accelerator memory."""
        state, self._state = self._state, None
        if state is not None and state.device.type == "cuda":
            import torch

            del state
            torch.cuda.empty_cache()

    def generate(self, requests: list[ChatRequest]) -> list[str]:
        """Raw replies, one per request, generated ``batch_size`` requests at a time."""
        out: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[start : start + self.batch_size]))
        return out

    def render(self, request: ChatRequest) -> str:
        """The exact prompt text (chat template applied, images as placeholders) the model sees."""
        from groundedit.models.chat.hf_inputs import render_chat_text

        state = self._loaded()
        return render_chat_text(state.tokenizer, request, state.chat_template)

    def _loaded(self) -> _Loaded:
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}({self.model_id!r}): call setup() first")
        return self._state

    def _generate_batch(self, requests: list[ChatRequest]) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from groundedit.models.chat.hf_inputs import build_inputs
        from groundedit.models.chat.hf_sampling import RowSampler

        state = self._loaded()
        images = [[prepare_image(im, self.min_pixels, self.max_pixels) for im in r.images] for r in requests]
        inputs = build_inputs(
            state.tokenizer,
            state.image_processor,
            requests,
            images,
            (self.min_pixels, self.max_pixels),
            state.chat_template,
        )
        inputs = {k: v.to(state.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(state.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        sampler = RowSampler(
            grammars=[self._grammar(r.constraint) for r in requests],
            sampling=[r.sampling for r in requests],
            stop_ids=state.stop_ids,
            vocab_size=state.vocab_size,
            tokenizer_size=len(state.tokenizer),
            prompt_len=prompt_len,
        )
        # Greedy over the sampler's noised scores (see hf_sampling). The sampling knobs are set to
        # their neutral values so the checkpoint's generation_config (temperature, top-k, repetition
        # penalty...) cannot leak in: only the request's own Sampling decides.
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max(r.sampling.max_new_tokens for r in requests),
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            repetition_penalty=1.0,
            eos_token_id=state.stop_ids,
            pad_token_id=state.tokenizer.pad_token_id,
        )
        with torch.inference_mode():
            sequences = state.model.generate(
                **inputs, generation_config=config, logits_processor=LogitsProcessorList([sampler])
            )
        return state.tokenizer.batch_decode(sequences[:, prompt_len:], skip_special_tokens=True)

    def _grammar(self, constraint: OutputConstraint | None) -> Any:
        if constraint is None:
            return None
        compiler = self._loaded().compiler
        if constraint.json_schema is not None:
            # Compact JSON: no free whitespace between tokens, so decoding cannot stall on spaces.
            return compiler.compile_json_schema(
                json.dumps(constraint.json_schema), any_whitespace=False, separators=(",", ":")
            )
        return compiler.compile_regex(constraint.regex)


def _stop_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """The tokenizer's end-of-turn token first (it is what a forced stop emits), then the checkpoint's."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in ids if i is not None))


def _image_processor(model_id: str) -> Any:
    # The PIL implementation needs no torchvision and computes the same patches as the default one.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil.from_pretrained(model_id)


def _chat_template_file(model_id: str) -> str | None:
    """A chat template shipped beside the tokenizer (``chat_template.jinja`` or ``.json``), if any."""
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(model_id, name, _raise_exceptions_for_missing_entries=False)
        if path:
            text = Path(path).read_text()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None
