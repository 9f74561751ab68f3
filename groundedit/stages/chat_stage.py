"""Shared machinery of the VLM stages (saliency, instruct, rewrite, qc): one chat backend per
worker, built from the spec (backend kind, model, options), loaded in ``setup()``; deterministic
per-sample sampling seeds; provenance with the model, prompt hash and the sampling that worked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from groundedit.records import Provenance, Sample
from groundedit.seeding import sampling_seed
from groundedit.stages.base import Stage


class ChatParams(BaseModel):
    """Parameters every VLM stage has; stages extend it."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.7, ge=0.0, description="> 0 so that retries can differ")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_attempts: int = Field(3, ge=1, description="tries per sample before rejecting it")
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to the backend (batch_size, max_pixels, tensor_parallel_size, …)",
    )


class ChatStage(Stage):
    """Base of the VLM stages. ``model_role`` names the entry of ``spec.models`` to load."""

    Params = ChatParams
    uses_seed = True
    model_role: ClassVar[str] = "vlm"

    def setup(self) -> None:
        from groundedit.models.chat import make_backend
        from groundedit.models.chat.prompts import PromptTemplate
        from groundedit.models.hub import quiet_loading, resolve

        if self.spec.backend is None or self.model_role not in self.spec.models:
            raise ValueError(f"stage {self.name}: spec needs 'backend' and models.{self.model_role}")
        quiet_loading()
        model = resolve(self.spec.model_ref(self.model_role))
        self.backend = make_backend(self.spec.backend, model=model, **self.params.backend_options)
        self.backend.setup()
        # the prompt text the driver shipped with the spec, not whatever this worker's disk holds
        self.template = PromptTemplate.from_text(Path(self.spec.prompt).stem, self.spec.prompt_text())

    def requirements(self):
        """The model, plus vLLM itself when the spec asks for that backend (GPU machines only)."""
        from groundedit.models.hub import Requirement

        reqs = super().requirements()
        if self.spec.backend == "vllm":
            reqs.append(Requirement(self.name, "backend", "vllm", kind="package", fix="make install-gpu"))
        return reqs

    def teardown(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None and hasattr(backend, "teardown"):
            backend.teardown()

    def sampling(self, key: str):
        """The sampling of a sample's first try: its seed depends only on the run seed and the key."""
        from groundedit.models.chat import Sampling

        p = self.params
        seed = sampling_seed(self.config.seed, f"{self.name}:{key}")
        return Sampling(max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p, seed=seed)

    def answered(self, s: Sample, outcome, update: dict) -> Sample:
        """``s`` with ``update`` applied and this stage's provenance (model, prompt, sampling)."""
        prov: Provenance = self.provenance(sampling={**outcome.sampling, "attempts": outcome.attempts})
        return s.model_copy(update={**update, "provenance": [*s.provenance, prov]})

    def failed(self, s: Sample, outcome) -> Sample:
        """``s`` rejected with the failure's reason, detail and raw model text."""
        detail = f"{outcome.detail} (after {outcome.attempts} attempts)"
        return s.reject(self.name, str(outcome.reason), detail, raw=outcome.raw)
