"""Stage specs: one YAML file per stage under ``stages/``, validated by pydantic, with profiles.

A spec says which backend and models a stage uses, the resources one worker needs, how many workers
to run, the batch size, the prompt file and the stage's own parameters (validated by the stage
class's ``Params`` model). A profile (``paper`` by default, ``tiny`` for tests and the demo) is a
set of overrides under the file's ``profiles:`` key, merged over the base.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

DEFAULT_PROFILE = "paper"
_ROOT = Path(__file__).resolve().parent.parent


def stages_dir() -> Path:
    return Path(os.environ.get("GROUNDEDIT_STAGES_DIR", _ROOT / "stages"))


def prompts_dir() -> Path:
    return Path(os.environ.get("GROUNDEDIT_PROMPTS_DIR", _ROOT / "prompts"))


class SpecError(ValueError):
    """A stage spec or pipeline file is missing or invalid."""


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float = Field(1.0, ge=0, description="CPU cores one worker reserves")
    gpus: float = Field(0.0, ge=0, description="GPUs one worker reserves (tensor parallel: the TP size)")


class StageSpec(BaseModel):
    """A stage's declarative configuration, after the profile's overrides are applied."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    description: str = ""
    backend: str | None = Field(None, description="model backend (e.g. transformers, vllm)")
    models: dict[str, str] = Field(
        default_factory=dict, description="role -> HF id, local path or tiny://name"
    )
    prompt: str | None = Field(None, description="prompt file under prompts/")
    resources: Resources = Field(default_factory=Resources)
    workers: int = Field(1, ge=1, description="parallel workers (Ray actors) for this stage")
    batch_size: int = Field(16, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    # Filled by the driver (:meth:`for_workers`) and shipped with the spec, so a worker on any node
    # uses the driver's prompt text and model locations, never its own disk or environment.
    _prompt_body: str | None = PrivateAttr(None)
    _model_refs: dict[str, str] = PrivateAttr(default_factory=dict)

    def for_workers(self, cwd: Path | None = None) -> StageSpec:
        """A copy carrying the prompt's text and each model reference as the driver resolves it:
        local paths made absolute against ``cwd`` (default: the driver's working directory)."""
        spec = self.model_copy()
        spec._prompt_body = self.prompt_text()
        spec._model_refs = {role: _absolute(ref, cwd or Path.cwd()) for role, ref in self.models.items()}
        return spec

    def model_ref(self, role: str) -> str:
        """Where to load the model of ``role`` from (as the driver resolved it, when it did)."""
        return self._model_refs.get(role) or self.models[role]

    def prompt_text(self) -> str | None:
        if self.prompt is None:
            return None
        if self._prompt_body is not None:
            return self._prompt_body
        path = prompts_dir() / self.prompt
        if not path.is_file():
            raise SpecError(f"stage '{self.stage}': prompt file {path} not found")
        return path.read_text()

    def prompt_hash(self) -> str | None:
        text = self.prompt_text()
        return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:16]

    def spec_hash(self) -> str:
        """Hash of everything that changes the stage's output. Parallelism (workers, resources,
        batch size) is left out: outputs must not depend on it."""
        payload = {
            "stage": self.stage,
            "backend": self.backend,
            "models": self.models,
            "prompt": self.prompt_hash(),
            "params": self.params,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _absolute(ref: str, cwd: Path) -> str:
    """A model reference that names an existing local path, made absolute; others unchanged
    (``tiny://`` names, Hugging Face ids)."""
    if "://" in ref:
        return ref
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = cwd / path
    return str(path.resolve()) if path.exists() else ref


def merge_profile(base: dict, override: dict) -> dict:
    """Overlay a profile on a spec: sections (``resources``, ``models``, ``params``) merge key by key,
    and each value inside a section is replaced whole — a profile that sets
    ``params.backend_options`` sets all of it, never half of the base's."""
    out = dict(base)
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path) -> dict:
    """A YAML file's top-level mapping, or a :class:`SpecError` naming the file."""
    if not path.is_file():
        raise SpecError(f"spec file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return data


def available_profiles(directory: Path | None = None) -> set[str]:
    directory = directory or stages_dir()
    names = {DEFAULT_PROFILE}
    for path in directory.glob("*.yaml"):
        names |= set((read_yaml(path).get("profiles") or {}).keys())
    return names


def load_spec(name: str, profile: str = DEFAULT_PROFILE, directory: Path | None = None) -> StageSpec:
    """Load ``stages/<name>.yaml`` with ``profile``'s overrides applied."""
    path = (directory or stages_dir()) / f"{name}.yaml"
    data = read_yaml(path)
    profiles = data.pop("profiles", None) or {}
    if profile != DEFAULT_PROFILE and profile in profiles:
        data = merge_profile(data, profiles[profile])
    data.setdefault("stage", name)
    try:
        spec = StageSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{path}: {e}") from e
    if spec.stage != name:
        raise SpecError(f"{path}: 'stage: {spec.stage}' does not match the file name")
    return spec


DEFAULT_RECIPE = "sa1b"
# A recipe is a pipeline file: the stage order of one kind of input.
RECIPE_FILES = {"sa1b": "pipeline.yaml", "pairs": "pairs.yaml"}


def load_pipeline(directory: Path | None = None, recipe: str = DEFAULT_RECIPE) -> list[str]:
    """The stage order of ``recipe``: ``stages/pipeline.yaml`` (SA-1B photos) or ``stages/pairs.yaml``
    (existing edit pairs)."""
    if recipe not in RECIPE_FILES:
        raise SpecError(f"unknown recipe '{recipe}' (choose from: {', '.join(RECIPE_FILES)})")
    name = RECIPE_FILES[recipe]
    data = read_yaml((directory or stages_dir()) / name)
    order = data.get("order")
    if not isinstance(order, list) or not all(isinstance(s, str) for s in order) or not order:
        raise SpecError(f"stages/{name}: 'order' must be a non-empty list of stage names")
    return order
