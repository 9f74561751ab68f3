"""The training spec: ``stages/train.yaml`` validated by pydantic, with ``paper`` and ``tiny`` profiles.

Profiles merge over the base as stage specs do (:func:`groundedit.specs.merge_profile`): each section
merges key by key and each value inside a section is replaced whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from groundedit.specs import DEFAULT_PROFILE, SpecError, merge_profile, prompts_dir, read_yaml, stages_dir


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Optim(_Section):
    lr: float = Field(2e-5, gt=0, description="peak learning rate (after warm-up; constant after)")
    warmup_steps: int = Field(200, ge=0, description="linear warm-up from 0 over this many steps")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-15, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0, description="clip the global gradient L2 norm to this")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="keep an EMA of the trained weights, exported as model/ (None: off)"
    )
    eight_bit: bool = Field(
        False, description="8-bit AdamW state (torchao, any device and FSDP2; else bitsandbytes on one GPU)"
    )


class Freeze(_Section):
    vit: bool = Field(False, description="SigLIP encoder (and its connector) get no updates")
    und: bool = Field(False, description="the LM's understanding expert (and embeddings, lm_head) frozen")
    llm: bool = Field(False, description="the whole language model frozen (both experts)")


class LoraSpec(_Section):
    """LoRA adapters on the LM's projections, in both experts; the rest of Bagel frozen, the auxiliary
    grounding modules trained in full."""

    enabled: bool = Field(False, description="train LoRA adapters instead of the full model")
    rank: int = Field(16, ge=1, description="adapter rank r")
    alpha: float = Field(32.0, gt=0, description="adapter scale is alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="projections of every LM layer that get an adapter, in both experts",
    )
    lr: float | None = Field(1e-4, gt=0, description="learning rate in LoRA mode (None: optim.lr)")


class LossWeights(_Section):
    ce: float = Field(1.0, ge=0)
    mse: float = Field(1.0, ge=0)
    tv: float = Field(1.0, ge=0, description="text-vision alignment (paper eq. 3)")
    vv: float = Field(1.0, ge=0, description="vision-vision alignment (paper eq. 4)")
    mask: float = Field(0.1, ge=0, description="mask reconstruction, sum of three BCEs (paper eq. 2)")


class CfgDropout(_Section):
    text: float = Field(0.1, ge=0, lt=1, description="drop the instruction")
    vit: float = Field(0.3, ge=0, lt=1, description="drop a conditioning image's ViT tokens")
    vae: float = Field(0.3, ge=0, lt=1, description="drop a conditioning image's clean VAE tokens")


class ImageRule(_Section):
    max_size: int = Field(..., ge=1)
    min_size: int = Field(..., ge=1)
    stride: int = Field(..., ge=1)
    max_pixels: int | None = Field(
        None, ge=1, description="pixel cap of the images of one sample together (None: the model's rule's)"
    )


class SequenceSpec(_Section):
    reasoning_fraction: float = Field(
        1.0,
        ge=0,
        le=1,
        description="GroundEdit samples trained as InterCoG sequences; the rest as plain edits",
    )
    cfg_dropout: CfgDropout = Field(default_factory=CfgDropout)
    vae_batching: Literal["per_image", "padded"] = Field(
        "per_image", description="encode each VAE image alone, or a pack's images zero-padded as one batch"
    )
    vae_image: ImageRule | None = Field(None, description="resize rule of VAE images (None: the model's)")
    vit_image: ImageRule | None = Field(None, description="resize rule of ViT images (None: the model's)")
    vlm_image: ImageRule | None = Field(
        None,
        description="resize rule of vlm_sft images (None: the ViT rule); max_pixels is shared by a sample's images",
    )


class GroundingSpec(_Section):
    align_layer: int = Field(14, ge=0, description="LM layer whose states Ltv and Lvv align")
    vv_target: Literal["llm", "siglip"] = Field(
        "llm", description="Lvv target: LM states of the grounded image's ViT tokens, or SigLIP's output"
    )
    mask_resolution: Literal["decoder", "input"] = Field(
        "decoder", description="BCE on the decoder's 4x grid, or on logits upsampled to SAM's input frame"
    )
    projector_hidden: int = Field(1024, ge=1, description="width of the hidden layers of TP, VP, Pt, Pv")
    detach_targets: bool = Field(False, description="stop gradients into the alignment targets")


class Runtime(_Section):
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    autocast_bf16: bool = Field(
        True, description="on CUDA: bf16 autocast of the forward; LoRA's frozen base is loaded in bf16"
    )
    gradient_checkpointing: bool = Field(True, description="recompute LM and SigLIP layers in the backward")
    cpu_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    fsdp_bf16: bool = Field(
        True, description="multi-process on CUDA: FSDP2 keeps bf16 compute params, reduces gradients in fp32"
    )
    gradient_sync: Literal["pack", "step"] = Field(
        "pack",
        description="FSDP2: reduce-scatter gradients after every pack, or once per step (fewer collectives; "
        "every rank then holds the whole unsharded gradient in fp32 between packs: see --plan)",
    )

    @model_validator(mode="after")
    def _precision(self) -> Runtime:
        if self.fsdp_bf16 and not self.autocast_bf16:
            raise ValueError(
                "runtime.fsdp_bf16 needs runtime.autocast_bf16: bf16 parameters without autocast would "
                "feed bf16 states to the fp32 grounding heads"
            )
        return self


class Prompts(_Section):
    grounding_system: str = Field(..., description="system prompt file of grounding-reasoning sequences")
    edit_system: str = Field(..., description="system prompt file of plain edit sequences")


class TrainSpec(_Section):
    """Everything a training run needs besides its data and output folder."""

    stage: Literal["train"] = "train"
    description: str = ""
    models: dict[str, str] = Field(..., description="bagel and sam: HF id, local path or tiny://name")
    prompts: Prompts
    optim: Optim = Field(default_factory=Optim)
    max_steps: int = Field(4000, ge=1)
    batch_size: int = Field(64, ge=1, description="samples per optimizer step")
    max_tokens_per_pack: int = Field(20480, ge=1, description="token budget of one forward")
    max_tokens_per_sample: int = Field(
        20480, ge=1, description="a sample longer than this (nothing dropped) is skipped as 'too_long'"
    )
    max_skips_in_a_row: int = Field(
        1000, ge=1, description="a data source that skips this many samples in a row stops the run"
    )
    mixture: dict[str, float] = Field(
        default_factory=dict,
        description="default weight of a --data source by its kind (PATH=WEIGHT overrides); a kind's weight "
        "is shared by its sources; kinds not listed weigh 1",
    )
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1, description="training checkpoints kept (older ones deleted)")
    log_every: int = Field(1, ge=1)
    seed: int = 0
    freeze: Freeze = Field(default_factory=Freeze)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    sequence: SequenceSpec = Field(default_factory=SequenceSpec)
    grounding: GroundingSpec = Field(default_factory=GroundingSpec)
    runtime: Runtime = Field(default_factory=Runtime)

    def model_post_init(self, _context) -> None:
        missing = {"bagel", "sam"} - self.models.keys()
        if missing:
            raise ValueError(f"models: missing {sorted(missing)}")
        if self.max_tokens_per_sample > self.max_tokens_per_pack:
            raise ValueError(
                f"max_tokens_per_sample {self.max_tokens_per_sample} exceeds max_tokens_per_pack "
                f"{self.max_tokens_per_pack}: a sample must fit one forward"
            )
        from .data import KINDS  # the data layer owns the kind names

        unknown = sorted(set(self.mixture) - set(KINDS))
        if unknown:
            raise ValueError(f"mixture: unknown kinds {unknown} (known: {', '.join(KINDS)})")
        bad = sorted(k for k, w in self.mixture.items() if w <= 0)
        if bad:
            raise ValueError(f"mixture: weights must be positive ({', '.join(bad)})")

    def system_prompts(self) -> tuple[str, str]:
        """(grounding-reasoning system prompt, plain-edit system prompt) from ``prompts/``."""
        return read_system_prompt(self.prompts.grounding_system), read_system_prompt(self.prompts.edit_system)


def read_system_prompt(name: str, directory: Path | None = None) -> str:
    """A system-prompt file: leading ``#`` comment lines are dropped, the rest is the prompt."""
    path = (directory or prompts_dir()) / name
    if not path.is_file():
        raise SpecError(f"prompt file {path} not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    text = "\n".join(lines).strip()
    if not text:
        raise SpecError(f"prompt file {path} is empty")
    return text


def load_train_spec(
    profile: str = DEFAULT_PROFILE, directory: Path | None = None, overrides: dict | None = None
) -> TrainSpec:
    """``stages/train.yaml`` with ``profile`` and then ``overrides`` (same merge rule) applied."""
    path = (directory or stages_dir()) / "train.yaml"
    data = read_yaml(path)
    profiles = data.pop("profiles", None) or {}
    if profile != DEFAULT_PROFILE:
        if profile not in profiles:
            raise SpecError(f"{path}: no profile '{profile}' (have: {', '.join(sorted(profiles)) or 'none'})")
        data = merge_profile(data, profiles[profile])
    if overrides:
        data = merge_profile(data, overrides)
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{path}: {e}") from e
