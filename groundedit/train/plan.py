"""What a training run will need, worked out before any weight is read: ``groundedit train --plan``.

The models are built on the meta device (shapes, no memory) from their configs — a local folder's, or the
known architecture of Bagel-7B-MoT and SAM ViT-H when the checkpoints are not downloaded — and frozen,
adapted (LoRA) and counted by the trainer's own functions. The token lengths come from the ``--data``
sources, planned by the trainer's :class:`~groundedit.train.sequence.SequenceBuilder` (images decoded,
nothing else loaded). Bytes per GPU are counted from the parameter shapes:

* weights: fp32 master weights (sharded by FSDP2 over the processes: ``ceil(rows / N)`` rows each, as
  ``torch.chunk`` cuts them); with LoRA the frozen base in bf16 (the trainer loads it so) plus fp32 adapters;
* working copies: what is whole for a moment — bf16 copies of the weights that autocast keeps for one
  process's forward; under FSDP2 the root unit (embeddings, lm_head, SigLIP, ...) unsharded in bf16 for the
  whole step plus two decoder layers (the current one and the prefetched next);
* gradients: fp32 like the weights (sharded); under FSDP2 two layers' unsharded bf16 gradients and their
  fp32 reduce buffers, and with ``gradient_sync: step`` the whole unsharded fp32 gradient;
* optimizer: AdamW's two moments (fp32, or torchao's 8-bit: one byte a value, an fp32 scale per 256 and a
  256-entry table, for tensors of at least 4096 values that 256 divides);
* EMA: fp32 averages of the trained Bagel parameters (sharded);
* grounding heads (replicated, fp32, with gradients), frozen SAM encoder (fp32) and VAE;
* activations: :func:`activation_bytes` at the largest pack (``max_tokens_per_pack``) with the data's mix of
  text, ViT and VAE tokens;
* a fixed reserve for the CUDA context, NCCL buffers and allocator fragmentation.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import torch
from pydantic import BaseModel

from groundedit.models.bagel import Bagel, BagelConfig, FluxVAE

from .errors import TrainError
from .memory import GIB, MetaModels, PackShape, memory_bytes
from .spec import TrainSpec

OFFICIAL_BAGEL, OFFICIAL_SAM = "ByteDance-Seed/BAGEL-7B-MoT", "facebook/sam-vit-huge"
DEFAULT_SAMPLES = 64


class TokenLengths(BaseModel):
    """Plan lengths of the samples read from ``--data`` (tokens, CFG dropout as trained)."""

    samples: int
    min: int
    median: int
    max: int
    too_long: int
    limit: int
    skipped: dict[str, int]
    tokenizer: str


class Plan(BaseModel):
    """One run's needs; ``memory`` is bytes per GPU by item."""

    model: str
    mode: str
    eight_bit: bool
    processes: int
    gradient_sync: str
    ema: bool
    parameters: dict[str, int]
    trainable: int
    tokens: TokenLengths | None
    activation_pack: dict[str, int]
    memory: dict[str, int]
    total: int
    gpu_memory: int
    fits: bool


# -- the models on the meta device ----------------------------------------------------------------------


def _local_folder(ref: str, marker: str) -> Path | None:
    """A folder holding ``marker`` for a model reference, without any download: tiny models are built,
    local paths taken, hub ids looked up in the Hugging Face cache."""
    from groundedit.models.hub import TINY_PREFIX, resolve

    if ref.startswith(TINY_PREFIX) or Path(ref).is_dir():
        return Path(resolve(ref))
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, marker)
    except Exception:  # an id the hub library refuses, a cache it cannot read: treat as not downloaded
        return None
    return Path(found).parent if isinstance(found, str) else None


def bagel_architecture(ref: str) -> tuple[BagelConfig, Path | None]:
    """Bagel's config from its folder, or the known Bagel-7B-MoT architecture; and the folder, if any."""
    from groundedit.models.bagel.loading import read_config

    folder = _local_folder(ref, "llm_config.json")
    if folder is not None and (folder / "llm_config.json").is_file():
        return read_config(folder), folder
    if ref == OFFICIAL_BAGEL:
        return BagelConfig(), None
    raise TrainError(
        f"--plan: {ref} is not a local Bagel folder nor in the cache; its architecture is unknown"
    )


def sam_architecture(ref: str):
    """SAM's config from its folder, or SAM ViT-H's when ``facebook/sam-vit-huge`` is not downloaded."""
    from transformers import SamConfig

    from groundedit.models.perception.architectures import sam_config

    folder = _local_folder(ref, "config.json")
    if folder is not None and (folder / "config.json").is_file():
        return SamConfig.from_pretrained(str(folder))
    if ref == OFFICIAL_SAM:
        return sam_config("full")
    raise TrainError(f"--plan: {ref} is not a local SAM folder nor in the cache; its architecture is unknown")


def meta_models(spec: TrainSpec, config: BagelConfig) -> MetaModels:
    """Bagel, VAE, SAM encoder and grounding heads on the meta device, frozen and adapted as training does."""
    from transformers import SamModel

    from .grounding import GroundingHeads
    from .lora import add_lora
    from .trainer import freeze_bagel

    with torch.device("meta"):
        bagel, vae = Bagel(config), FluxVAE(config.vae)
        sam = SamModel(sam_architecture(spec.models["sam"]))
        hidden = config.llm.hidden_size
        vv_dim = hidden if spec.grounding.vv_target == "llm" else config.vit.hidden_size
        heads = GroundingHeads(sam, hidden, vv_dim, spec.grounding.projector_hidden)
        freeze_bagel(bagel, spec.freeze)
        if spec.lora.enabled:
            add_lora(bagel, spec.lora)
    return MetaModels(bagel, vae.requires_grad_(False), sam.vision_encoder.requires_grad_(False), heads)


PARTS = (
    "LM understanding expert",
    "LM generation expert",
    "LM embeddings + lm_head",
    "SigLIP + connector",
    "latent in/out, timestep, positions",
    "lora adapters",
    "VAE (frozen)",
    "SAM encoder (frozen)",
    "grounding heads",
)


def parameter_parts(models: MetaModels) -> dict[str, int]:
    """Parameter counts by part (LoRA adapters apart)."""
    parts: dict[str, int] = dict.fromkeys(PARTS, 0)

    def add(part: str, n: int) -> None:
        parts[part] = parts.get(part, 0) + n

    for name, p in models.bagel.named_parameters():
        if ".lora_" in name:
            add("lora adapters", p.numel())
        elif name.startswith("language_model.model.layers.") or name.startswith("language_model.model.norm"):
            add("LM generation expert" if "moe_gen" in name else "LM understanding expert", p.numel())
        elif name.startswith("language_model."):
            add("LM embeddings + lm_head", p.numel())
        elif name.startswith(("vit_model.", "connector.", "vit_pos_embed.")):
            add("SigLIP + connector", p.numel())
        else:
            add("latent in/out, timestep, positions", p.numel())
    add("VAE (frozen)", sum(p.numel() for p in models.vae.parameters()))
    add("SAM encoder (frozen)", sum(p.numel() for p in models.sam_encoder.parameters()))
    add("grounding heads", sum(p.numel() for p in models.heads.parameters()))
    return {k: v for k, v in parts.items() if v}


# -- bytes -----------------------------------------------------------------------------------------------


# -- token lengths -----------------------------------------------------------------------------------------


def _tokenizer(folder: Path | None):
    from transformers import AutoTokenizer

    if folder is not None and (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder)), "the model's"
    import tempfile

    from groundedit.models.tiny_tokenizer import build_tiny_tokenizer

    path = build_tiny_tokenizer(tempfile.mkdtemp(prefix="groundedit-plan-"))
    note = "tiny byte-level BPE (the model's tokenizer is not local): text lengths are overestimates"
    return AutoTokenizer.from_pretrained(str(path)), note


def read_lengths(
    spec: TrainSpec, data_args: list[str], config: BagelConfig, folder: Path | None, samples: int
) -> tuple[TokenLengths, PackShape]:
    """Plan ``samples`` draws of the data mixture as training would (same keyed CFG dropout)."""
    from .data import DataMixture
    from .sequence import SequenceBuilder

    tokenizer, note = _tokenizer(folder)
    grounding, edit = spec.system_prompts()
    builder = SequenceBuilder(tokenizer, config, spec.sequence, grounding, edit)
    data = DataMixture.from_args(data_args, seed=spec.seed, kind_weights=spec.mixture)
    data.check()
    lengths, mix = [], PackShape(0)
    for _ in range(samples):
        draw, example = data.next()
        plan = builder.plan(example, random.Random(f"{spec.seed}:sequence:{draw}"))
        lengths.append(plan.full_tokens)  # what the budget is checked against (nothing dropped)
        mix = _add(mix, plan, config)
    too_long = sum(n > spec.max_tokens_per_sample for n in lengths)
    stats = TokenLengths(
        samples=len(lengths),
        min=min(lengths),
        median=round(statistics.median(lengths)),
        max=max(lengths),
        too_long=too_long,
        limit=spec.max_tokens_per_sample,
        skipped=dict(data.skipped),
        tokenizer=note,
    )
    return stats, mix


def _add(mix: PackShape, plan, config: BagelConfig) -> PackShape:
    vae = noised = vit = ce = 0
    for op in plan.ops:
        n = op.n_tokens(config)
        if op.kind in ("vae", "noised"):
            vae += n - 2
            noised += (n - 2) if op.kind == "noised" else 0
        elif op.kind == "vit":
            vit += n - 2
        elif op.kind == "text" and op.loss:
            ce += n - 1
    return PackShape(
        mix.tokens + plan.n_tokens, mix.vae + vae, mix.noised + noised, mix.vit + vit, mix.ce + ce
    )


def default_mix(spec: TrainSpec, config: BagelConfig) -> PackShape:
    """Without ``--data``: an InterCoG sample's mix at the largest square images the resize rules allow
    (4 VAE, 2 ViT images, ~300 text tokens with a loss among ~400)."""
    vae_rule = spec.sequence.vae_image or config.vae_image
    vit_rule = spec.sequence.vit_image or config.vit_image
    vae_side = vae_rule.max_size // config.latent_downsample
    vit_side = vit_rule.max_size // config.vit.patch_size
    vae, vit = 4 * vae_side * vae_side, 2 * vit_side * vit_side
    return PackShape(vae + vit + 400, vae, 2 * vae_side * vae_side, vit, 300)


def make_plan(
    spec: TrainSpec,
    data_args: list[str],
    processes: int = 1,
    gpu_memory_gib: float = 80.0,
    samples: int = DEFAULT_SAMPLES,
) -> Plan:
    """The plan of training ``spec`` on ``data_args`` with ``processes`` GPUs (no weight is read)."""
    config, folder = bagel_architecture(spec.models["bagel"])
    models = meta_models(spec, config)
    tokens = None
    mix = default_mix(spec, config)
    if data_args:
        tokens, mix = read_lengths(spec, data_args, config, folder, samples)
    pack = mix.scaled(spec.max_tokens_per_pack)
    memory = memory_bytes(spec, models, processes, pack)
    total = sum(memory.values())
    parts = parameter_parts(models)
    gpu = int(gpu_memory_gib * GIB)
    return Plan(
        model=spec.models["bagel"],
        mode="lora" if spec.lora.enabled else "full",
        eight_bit=spec.optim.eight_bit,
        processes=processes,
        gradient_sync=spec.runtime.gradient_sync,
        ema=spec.optim.ema_decay is not None,
        parameters=parts,
        trainable=sum(p.numel() for p in models.bagel.parameters() if p.requires_grad)
        + sum(p.numel() for p in models.heads.parameters() if p.requires_grad),
        tokens=tokens,
        activation_pack={
            "tokens": pack.tokens,
            "vae": pack.vae,
            "noised": pack.noised,
            "vit": pack.vit,
            "ce": pack.ce,
        },
        memory=memory,
        total=total,
        gpu_memory=gpu,
        fits=total <= gpu,
    )


def render(plan: Plan) -> str:
    """The plan as a few aligned lines of text."""
    mode = "LoRA" if plan.mode == "lora" else "full fine-tuning"
    if plan.eight_bit:
        mode += " + 8-bit AdamW"
    lines = [f"plan: {plan.model}, {mode}, {plan.processes} process(es) (bytes per GPU)"]
    lines.append("parameters:")
    for part, n in plan.parameters.items():
        lines.append(f"  {part:38} {n / 1e9:9.3f} B")
    lines.append(f"  {'trainable (Bagel + heads)':38} {plan.trainable / 1e9:9.3f} B")
    if plan.tokens is not None:
        t = plan.tokens
        lines.append(
            f"tokens per sample ({t.samples} read): min {t.min}, median {t.median}, max {t.max}; "
            f"{t.too_long} over max_tokens_per_sample {t.limit} (too_long)"
        )
        if t.skipped:
            lines.append(
                "  skipped while reading: " + ", ".join(f"{k} {v}" for k, v in sorted(t.skipped.items()))
            )
        lines.append(f"  text tokens counted with {t.tokenizer}")
    a = plan.activation_pack
    lines.append(
        f"activations at a full pack: {a['tokens']} tokens ({a['vae']} VAE, {a['vit']} ViT, {a['ce']} with CE)"
    )
    lines.append("memory per GPU:")
    for item, n in plan.memory.items():
        lines.append(f"  {item:38} {n / GIB:9.2f} GiB")
    verdict = "fits" if plan.fits else "does NOT fit"
    lines.append(f"  {'total':38} {plan.total / GIB:9.2f} GiB: {verdict} in {plan.gpu_memory / GIB:.0f} GiB")
    return "\n".join(lines)
