"""InterCoG fine-tuning of Bagel, one loop read top to bottom (the model files know nothing of it).

``train(spec, data, out)``: join the process group when torchrun started us; load Bagel, SAM and the data
(this rank's stripe); build the grounding heads; freeze; add LoRA adapters (one-GPU mode) or shard Bagel
with FSDP2 (several processes); AdamW (8-bit state when asked: ``optim.py``); then for each step draw this rank's
share of ``batch_size`` examples, build their sequences, group them into packs under the token budget, run
each pack forward and backward (the loss of a step is the same however it is packed and however many
ranks share it: every term is divided by its global count and gradients are summed), clip, step, update
the EMA, log, and checkpoint every ``checkpoint_every`` steps (``CheckpointManager``). At the end the
inference checkpoint is written in the official Bagel layout, one tensor at a time (gathered from the shards,
or with the adapters merged; the EMA's averages when one is kept).

Randomness is keyed, never drawn from a global stream: the data mixture by global draw number, each
sample's CFG dropout, VAE posterior draw, timesteps and noise by its draw number (and the step). So a
resumed run repeats the uninterrupted one exactly, and N processes repeat one process's run.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from groundedit.formats.manifest import atomic_write_bytes
from groundedit.image.codec import SampleError
from groundedit.models.bagel import LoadedBagel, load_bagel
from groundedit.models.bagel.model import shift_timesteps
from groundedit.seeding import draw_seed

from .checkpoint import (
    CheckpointManager,
    TrainedModules,
    export_inference,
    latest_checkpoint,
)
from .data import DataMixture
from .ema import EMA
from .errors import TrainError
from .grounding import GroundingHeads, SamEncoder
from .logbook import Logbook
from .lora import ADAPTER_DIR, add_lora, merged_tensors, save_adapter
from .objective import MASK_PARTS, TERMS, pack_counts, pack_terms
from .optim import build_optimizer, eight_bit_backend, set_lr
from .parallel import (
    World,
    average_replicated_grads,
    clip_gradients,
    close_world,
    device_of,
    full_tensors,
    init_world,
    load_sharded_weights,
    set_gradient_sync,
    shard_bagel,
    zero_touch,
)
from .sequence import Pack, SamplePlan, SequenceBuilder, build_pack, group_plans
from .spec import Freeze, TrainSpec


@dataclass
class Components:
    """Everything a step needs besides the optimizer."""

    bagel: LoadedBagel
    heads: GroundingHeads
    sam: SamEncoder
    builder: SequenceBuilder
    device: torch.device
    prompts: dict[str, str] = field(default_factory=dict)
    autocast: bool = False  # bf16 autocast of the forward (CUDA with runtime.autocast_bf16)


@dataclass
class StepRecord:
    """What one optimizer step reports (one line of ``metrics.jsonl``)."""

    step: int
    max_steps: int
    lr: float
    loss: float
    terms: dict[str, float]
    grad_norm: float
    samples: int
    packs: int
    tokens: int
    seconds: float
    skipped: dict[str, int]
    sources: dict[str, int] = field(default_factory=dict)  # the step's samples by --data source
    recipes: dict[str, int] = field(default_factory=dict)  # the step's shard samples by recipe

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "lr": self.lr,
            "loss": self.loss,
            **self.terms,
            "grad_norm": self.grad_norm,
            "samples": self.samples,
            "packs": self.packs,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens / max(self.seconds, 1e-9), 1),
            "skipped": self.skipped,
            "sources": self.sources,
            "recipes": self.recipes,
        }


# Spec fields a resumed run may change; any other change would make it a different run.
RESUMABLE_CHANGES = {"max_steps", "checkpoint_every", "keep_checkpoints", "log_every", "description"}


def preflight(spec: TrainSpec) -> None:
    """Stop before loading anything if a model cannot be had, naming each (as ``groundedit run`` does)."""
    from groundedit.models.hub import missing_models

    missing = missing_models([("train", role, ref) for role, ref in sorted(spec.models.items())])
    if missing:
        lines = "\n  ".join(missing)
        raise TrainError(f"models missing:\n  {lines}\nget them, or use --profile tiny")


def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def build_components(
    spec: TrainSpec, device: torch.device | None = None, bagel_weights: bool = True
) -> Components:
    """Load Bagel (float32 master weights; with LoRA under bf16 autocast, the frozen base straight in bf16;
    left on the meta device without ``bagel_weights``) and SAM, build the heads (seeded) and the sequence
    builder."""
    from groundedit.models.hub import quiet_loading, resolve
    from groundedit.models.perception.sam import load_sam

    quiet_loading()
    device = device or resolve_device(spec.runtime.device)
    autocast = device.type == "cuda" and spec.runtime.autocast_bf16
    dtype = torch.bfloat16 if spec.lora.enabled and autocast else torch.float32
    bagel = load_bagel(resolve(spec.models["bagel"]), device=device, dtype=dtype, model_weights=bagel_weights)
    layers = bagel.config.llm.num_hidden_layers
    if not 0 <= spec.grounding.align_layer <= layers:
        raise TrainError(f"grounding.align_layer {spec.grounding.align_layer} is outside 0..{layers}")
    sam_model, settings = load_sam(resolve(spec.models["sam"]), torch.float32)
    hidden = bagel.config.llm.hidden_size
    vv_dim = hidden if spec.grounding.vv_target == "llm" else bagel.config.vit.hidden_size
    torch.manual_seed(draw_seed(spec.seed, "heads"))
    heads = GroundingHeads(sam_model, hidden, vv_dim, spec.grounding.projector_hidden).to(device)
    grounding, edit = spec.system_prompts()
    builder = SequenceBuilder(bagel.tokenizer, bagel.config, spec.sequence, grounding, edit)
    prompts = {"grounding_system": grounding, "edit_system": edit}
    sam = SamEncoder(sam_model, settings, device)
    return Components(bagel, heads, sam, builder, device, prompts, autocast)


def apply_freezing(c: Components, freeze: Freeze) -> None:
    """The VAE and the SAM encoder never train; the spec may freeze the ViT, the und expert or the LM."""
    c.bagel.vae.requires_grad_(False).eval()
    freeze_bagel(c.bagel.model, freeze)


def freeze_bagel(model, freeze: Freeze) -> None:
    """Freeze the parts of Bagel the spec names (also applied to the meta-device model of ``--plan``)."""
    if freeze.vit:
        model.vit_model.requires_grad_(False)
        model.connector.requires_grad_(False)
    if freeze.llm:
        model.language_model.requires_grad_(False)
    elif freeze.und:
        for name, p in model.language_model.named_parameters():
            if "moe_gen" not in name:
                p.requires_grad_(False)


def next_plans(data: DataMixture, c: Components, spec: TrainSpec, n: int | None = None) -> list:
    """``n`` (default ``batch_size``) sample plans. A sample longer than ``max_tokens_per_sample`` with
    nothing dropped is skipped by the data stream as ``too_long`` (so a source of nothing but such samples
    stops the run with that reason instead of drawing forever)."""
    limit = spec.max_tokens_per_sample

    def plan(draw: int, example) -> SamplePlan:
        p = c.builder.plan(example, random.Random(f"{spec.seed}:sequence:{draw}"))
        if p.full_tokens > limit:
            raise SampleError(
                "too_long", f"{example.key}: {p.full_tokens} tokens > max_tokens_per_sample {limit}"
            )
        p.draw = draw
        return p

    return [data.next(plan)[1] for _ in range(n or spec.batch_size)]


@torch.no_grad()
def forward_inputs(c: Components, pack: Pack, seed: int, key: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """VAE latents and noise of a pack, with its draw-at-train-time timesteps filled in, each sample's drawn
    from its own generator (keyed by ``key`` and the sample's draw number): a sample gets the same noise
    whichever pack, and whichever rank, it lands in."""
    batch, cfg, vae = pack.batch, c.bagel.config, c.bagel.vae
    latents, noise, times = [], [], list(batch.timesteps)
    image = 0
    for sample in pack.samples:
        g = torch.Generator().manual_seed(draw_seed(seed, f"{key}:{sample.plan.draw}"))
        n_images = sum(op.kind in ("vae", "noised") for op in sample.plan.ops)
        for j in range(image, image + n_images):
            if batch.vae_batching == "per_image":
                latents.append(vae.encode(batch.vae_images[j][None].to(c.device, vae.dtype), generator=g)[0])
            if times[j] is None:  # logit-normal draw, then the training shift (the official recipe)
                times[j] = float(
                    shift_timesteps(torch.sigmoid(torch.randn((), generator=g)), cfg.train_timestep_shift)
                )
            h, w = batch.latent_grids[j]
            noise.append(torch.randn((h * w, cfg.latent_token_dim), generator=g))
        image += n_images
    if batch.vae_batching != "per_image" and batch.vae_images:
        # The official padded batch encodes a pack's images together: its posterior draw is keyed by the pack.
        g = torch.Generator().manual_seed(draw_seed(seed, f"{key}:pack:{pack.samples[0].plan.draw}"))
        latents = c.bagel.model.encode_images(vae, batch.vae_images, g, batch.vae_batching)
    batch.timesteps = times
    return latents, (torch.cat(noise) if noise else torch.zeros(0))


def step_losses(
    c: Components,
    packs: list[Pack],
    spec: TrainSpec,
    key: str,
    backward: bool,
    world: World | None = None,
) -> tuple[float, dict[str, float]]:
    """Forward (and backward) every pack; returns the step's loss and each term, normalised step-wide
    (over every rank's packs: each term is divided by its count summed over ranks)."""
    world = world or World()
    local: Counter = Counter()
    for pack in packs:
        local.update(pack_counts(pack))
    names = (*TERMS, *MASK_PARTS)
    totals = dict(zip(names, world.sum([float(local[t]) for t in names]), strict=True))
    weights = spec.loss_weights.model_dump()
    values: dict[str, float] = dict.fromkeys(names, 0.0)
    total = 0.0
    # FSDP needs every rank to run as many forwards and backwards: a rank with fewer packs repeats its
    # last one with weight zero.
    n_packs = int(world.max(len(packs)))
    once_per_step = world.distributed and backward and spec.runtime.gradient_sync == "step"
    for k in range(n_packs):
        pack, scale = (packs[k], 1.0) if k < len(packs) else (packs[-1], 0.0)
        if once_per_step:
            set_gradient_sync(c.bagel.model, k == n_packs - 1)
        latents, noise = forward_inputs(c, pack, spec.seed, key)
        with torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=c.autocast):
            out = c.bagel.model(
                pack.batch.to(c.device),
                latents=latents or None,
                noise=noise if noise.numel() else None,
                hidden_layers={spec.grounding.align_layer},
            )
            terms = pack_terms(out, pack, c.heads, c.sam, spec.grounding, c.bagel.config)
        loss = sum(weights[t] * terms.sums[t] / totals[t] for t in TERMS if t in terms.sums)
        # Every trainable parameter gets a gradient, zero when unused: FSDP2's collectives need it, and one
        # process does the same so that both step alike (AdamW moves an unused parameter on momentum).
        loss = loss + zero_touch(c.bagel.model)
        if backward:
            (loss * (scale * world.size)).backward()  # ranks' gradients are averaged (parallel.py)
        if scale:
            total += float(loss.detach())
            for t, v in terms.sums.items():
                values[t] += float(v.detach()) / totals[t]
    summed = world.sum([total, *(values[t] for t in names)])
    return summed[0], dict(zip(names, summed[1:], strict=True))


def train(
    spec: TrainSpec,
    data_args: list[str],
    out: Path,
    resume: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> Path:
    """Train as ``spec`` says on ``data_args`` (``--data`` values) into ``out``; returns ``out/model``.

    Under torchrun every process calls this; rank 0 writes the logs and the inference checkpoint."""
    world = init_world(spec.runtime.device)
    try:
        return _train(spec, data_args, Path(out), resume, on_step, world)
    finally:
        close_world(world)


def _check_modes(spec: TrainSpec, world: World, device: torch.device) -> None:
    """Refuse, before anything is loaded, what this world cannot run."""
    if spec.batch_size % world.size:
        raise TrainError(f"batch_size {spec.batch_size} is not a multiple of the {world.size} processes")
    if world.distributed and spec.lora.enabled:
        raise TrainError("LoRA is the one-process mode: run it without --nproc-per-node")
    if spec.optim.eight_bit:
        eight_bit_backend(device, sharded=world.distributed)


def _train(
    spec: TrainSpec,
    data_args: list[str],
    out: Path,
    resume: bool,
    on_step: Callable[[StepRecord], None] | None,
    world: World,
) -> Path:
    latest = latest_checkpoint(out)
    if resume and latest is None:
        raise TrainError(f"--resume: {out} holds no training checkpoint")
    if not resume and (latest is not None or (out / "metrics.jsonl").exists()):
        raise TrainError(f"{out} already holds a training run: pass --resume, or choose another --out")
    world.barrier()  # every rank has looked at OUT before rank 0 writes into it
    device = device_of(world, spec.runtime.device)
    _check_modes(spec, world, device)

    if spec.runtime.cpu_threads is not None:
        torch.set_num_threads(spec.runtime.cpu_threads)
    # Data and models are checked before anything is loaded; each rank reads its stripe of the data.
    data = DataMixture.from_args(
        data_args,
        seed=spec.seed,
        rank=world.rank,
        world_size=world.size,
        kind_weights=spec.mixture,
        max_skips_in_a_row=spec.max_skips_in_a_row,
    )
    data.check()
    preflight(spec)
    # Under torchrun Bagel is built on the meta device, sharded, then each rank reads its own rows of the
    # weights file: the whole model never sits on one GPU, nor in one process's host memory.
    c = build_components(spec, device, bagel_weights=not world.distributed)
    model, heads = c.bagel.model, c.heads
    apply_freezing(c, spec.freeze)
    model.set_gradient_checkpointing(spec.runtime.gradient_checkpointing)
    model.train()
    heads.train()
    # Adapters or sharding wrap the model here: after freezing, before the optimizer.
    o = spec.optim
    if spec.lora.enabled:
        add_lora(model, spec.lora)
    if world.distributed:
        shard_bagel(model, bf16=c.autocast and spec.runtime.fsdp_bf16)
        load_sharded_weights(model, c.bagel.folder / "ema.safetensors", device, world)
    model_params = [p for p in model.parameters() if p.requires_grad]
    head_params = [p for p in heads.parameters() if p.requires_grad]
    optimizer = build_optimizer(model_params + head_params, spec, device, sharded=world.distributed)
    ema = EMA(model, o.ema_decay) if o.ema_decay is not None else None
    checkpoints = CheckpointManager(
        out,
        world,
        TrainedModules(model, heads),
        optimizer,
        ema,
        every=spec.checkpoint_every,
        keep=spec.keep_checkpoints,
        trainable_only=spec.lora.enabled,
    )

    step = 0
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    run = {"spec": spec.model_dump(mode="json"), "data": data_args}
    if latest is not None:
        try:
            meta, data_state = checkpoints.restore(latest)
        except (RuntimeError, OSError, KeyError, ValueError) as e:
            raise TrainError(f"--resume: {latest} cannot be loaded ({type(e).__name__}: {e})") from e
        if meta["data_args"] != data_args:
            raise TrainError(f"--resume: the run was trained on --data {meta['data_args']}, not {data_args}")
        changed = sorted(
            k for k, v in run["spec"].items() if k not in RESUMABLE_CHANGES and meta["spec"].get(k) != v
        )
        if changed:
            raise TrainError(f"--resume: the spec changed since the checkpoint ({', '.join(changed)})")
        step = meta["step"]
        data.load_state_dict(data_state)
    log = None
    if world.main:
        atomic_write_bytes(out / "run.json", json.dumps(run, indent=2).encode())
        log = Logbook(out, resume_after=step)

    while step < spec.max_steps:
        started = time.perf_counter()
        lr = set_lr(optimizer, spec, step)
        plans = next_plans(data, c, spec, spec.batch_size // world.size)
        packs = [
            build_pack(g, c.bagel.config, c.bagel.tokens, spec.sequence.vae_batching)
            for g in group_plans(plans, spec.max_tokens_per_pack)
        ]
        loss, terms = step_losses(c, packs, spec, f"forward:{step}", backward=True, world=world)
        average_replicated_grads(world, head_params)
        grad_norm = clip_gradients([model_params, head_params], o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        step += 1

        counts = world.sum([len(plans), len(packs), sum(p.batch.length for p in packs)])
        skipped, sources, recipes = Counter(), Counter(), Counter()
        for rank_skipped, rank_sources, rank_recipes in world.gather(
            (
                dict(data.skipped),
                Counter(p.source for p in plans),
                Counter(p.recipe for p in plans if p.recipe),
            )
        ):
            skipped.update(rank_skipped)
            sources.update(rank_sources)
            recipes.update(rank_recipes)
        record = StepRecord(
            step=step,
            max_steps=spec.max_steps,
            lr=lr,
            loss=loss,
            terms=terms,
            grad_norm=float(grad_norm),
            samples=int(counts[0]),
            packs=int(counts[1]),
            tokens=int(counts[2]),
            seconds=time.perf_counter() - started,
            skipped=dict(skipped),
            sources=dict(sources),
            recipes=dict(recipes),
        )
        if log is not None and (step % spec.log_every == 0 or step == spec.max_steps):
            log.write(record)
        if on_step is not None and world.main:
            on_step(record)
        if checkpoints.due(step, last=step == spec.max_steps):
            checkpoints.save(step, {"data_args": data_args, "spec": run["spec"]}, data.state_dict())

    if log is not None:
        log.close()
    return _export(spec, c, out, ema, world)


def _export(spec: TrainSpec, c: Components, out: Path, ema: EMA | None, world: World) -> Path:
    """The inference checkpoint, written one tensor at a time: gathered from the shards (every rank takes
    part), merged from the adapters, or as trained; the EMA's averages when one is kept."""
    model = c.bagel.model
    if ema is not None:
        ema.copy_to_model()  # training is over: the model now holds what model/ ships
    tensors, extra = None, None
    if world.distributed:
        tensors = full_tensors(model)
    elif spec.lora.enabled:
        tensors = merged_tensors(model)
        extra = lambda folder: save_adapter(folder / ADAPTER_DIR, model, spec.lora)  # noqa: E731
    path = out / "model"
    if world.main:
        path = export_inference(out, model, c.bagel.folder, c.prompts, tensors, extra=extra)
    else:
        for _ in tensors:  # take part in every gather
            pass
    world.barrier()
    return path
