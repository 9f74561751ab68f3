"""InterCoG fine-tuning of Bagel, one loop read top to bottom (the model files know nothing of it).

``train(spec, data, out)``: load Bagel, SAM and the data; build the grounding heads; freeze; AdamW; then for
each step draw ``batch_size`` examples, build their sequences, group them into packs under the token
budget, run each pack forward and backward (the loss of a step is the same however it is packed), clip,
step, update the EMA, log, and checkpoint every ``checkpoint_every`` steps. At the end the inference
checkpoint is written in the official Bagel layout.

Randomness is keyed, never drawn from a global stream: the data mixture by draw number, each sample's CFG
dropout by its draw number, the forward's timesteps and noise by the step. So a resumed run repeats the
uninterrupted one exactly.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from groundedit.manifest import atomic_write_bytes
from groundedit.models.bagel import LoadedBagel, load_bagel
from groundedit.seeding import draw_seed

from .checkpoint import export_inference, latest_checkpoint, load_checkpoint, save_checkpoint
from .data import DataMixture
from .errors import TrainError
from .grounding import GroundingHeads, SamEncoder
from .logbook import Logbook
from .objective import MASK_PARTS, TERMS, pack_counts, pack_terms
from .sequence import Pack, SequenceBuilder, build_pack, group_plans
from .spec import Freeze, Optim, TrainSpec


@dataclass
class Components:
    """Everything a step needs besides the optimizer."""

    bagel: LoadedBagel
    heads: GroundingHeads
    sam: SamEncoder
    builder: SequenceBuilder
    device: torch.device
    prompts: dict[str, str] = field(default_factory=dict)


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


def load_sam(ref: str):
    """SAM model and processor settings from a hub id, a local folder or ``tiny://sam``."""
    from transformers import SamModel

    from groundedit.models.hub import quiet_loading, resolve
    from groundedit.models.perception.preprocess import ImageProcessorSettings, read_image_processor_config

    quiet_loading()
    path = resolve(ref)
    model = SamModel.from_pretrained(path, dtype=torch.float32)
    return model, ImageProcessorSettings.from_dict(read_image_processor_config(path))


def build_components(spec: TrainSpec) -> Components:
    """Load Bagel (float32 master weights) and SAM, build the heads (seeded) and the sequence builder."""
    from groundedit.models.hub import resolve

    device = resolve_device(spec.runtime.device)
    bagel = load_bagel(resolve(spec.models["bagel"]), device=device, dtype=torch.float32)
    layers = bagel.config.llm.num_hidden_layers
    if not 0 <= spec.grounding.align_layer <= layers:
        raise TrainError(f"grounding.align_layer {spec.grounding.align_layer} is outside 0..{layers}")
    sam_model, settings = load_sam(spec.models["sam"])
    hidden = bagel.config.llm.hidden_size
    vv_dim = hidden if spec.grounding.vv_target == "llm" else bagel.config.vit.hidden_size
    torch.manual_seed(draw_seed(spec.seed, "heads"))
    heads = GroundingHeads(sam_model, hidden, vv_dim, spec.grounding.projector_hidden).to(device)
    grounding, edit = spec.system_prompts()
    builder = SequenceBuilder(bagel.tokenizer, bagel.config, spec.sequence, grounding, edit)
    prompts = {"grounding_system": grounding, "edit_system": edit}
    return Components(bagel, heads, SamEncoder(sam_model, settings, device), builder, device, prompts)


def apply_freezing(c: Components, freeze: Freeze) -> None:
    """The VAE and the SAM encoder never train; the spec may freeze the ViT, the und expert or the LM."""
    model = c.bagel.model
    c.bagel.vae.requires_grad_(False).eval()
    if freeze.vit:
        model.vit_model.requires_grad_(False)
        model.connector.requires_grad_(False)
    if freeze.llm:
        model.language_model.requires_grad_(False)
    elif freeze.und:
        for name, p in model.language_model.named_parameters():
            if "moe_gen" not in name:
                p.requires_grad_(False)


def lr_at(step: int, optim: Optim) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
    return optim.lr * min(1.0, (step + 1) / (optim.warmup_steps + 1))


def next_plans(data: DataMixture, c: Components, spec: TrainSpec) -> list:
    """``batch_size`` sample plans; over-long samples are skipped (reason ``too_long``)."""
    plans = []
    while len(plans) < spec.batch_size:
        draw, example = data.next()
        plan = c.builder.plan(example, random.Random(f"{spec.seed}:sequence:{draw}"))
        if plan.n_tokens > spec.max_tokens_per_sample:
            data.skipped["too_long"] += 1
            continue
        plans.append(plan)
    return plans


def step_losses(
    c: Components, packs: list[Pack], spec: TrainSpec, generator: torch.Generator, backward: bool
) -> tuple[float, dict[str, float]]:
    """Forward (and backward) every pack; returns the step's loss and each term, normalised step-wide."""
    totals: Counter = Counter()
    for pack in packs:
        totals.update(pack_counts(pack))
    weights = spec.loss_weights.model_dump()
    values: dict[str, float] = dict.fromkeys((*TERMS, *MASK_PARTS), 0.0)
    total = 0.0
    use_bf16 = c.device.type == "cuda" and spec.runtime.autocast_bf16
    for pack in packs:
        with torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = c.bagel.model(
                pack.batch.to(c.device),
                vae=c.bagel.vae,
                hidden_layers={spec.grounding.align_layer},
                generator=generator,
            )
            terms = pack_terms(out, pack, c.heads, c.sam, spec.grounding, c.bagel.config)
        loss = sum(weights[t] * terms.sums[t] / totals[t] for t in TERMS if t in terms.sums)
        if backward:
            loss.backward()
        total += float(loss.detach())
        for t, v in terms.sums.items():
            values[t] += float(v.detach()) / totals[t]
    return total, values


def train(
    spec: TrainSpec,
    data_args: list[str],
    out: Path,
    resume: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> Path:
    """Train as ``spec`` says on ``data_args`` (``--data`` values) into ``out``; returns ``out/model``."""
    out = Path(out)
    latest = latest_checkpoint(out)
    if resume and latest is None:
        raise TrainError(f"--resume: {out} holds no training checkpoint")
    if not resume and (latest is not None or (out / "metrics.jsonl").exists()):
        raise TrainError(f"{out} already holds a training run: pass --resume, or choose another --out")

    if spec.runtime.cpu_threads is not None:
        torch.set_num_threads(spec.runtime.cpu_threads)
    # Data and models are checked before anything is loaded. (A distributed run passes its rank here.)
    data = DataMixture.from_args(data_args, seed=spec.seed)
    data.check()
    preflight(spec)
    c = build_components(spec)
    model, heads = c.bagel.model, c.heads
    apply_freezing(c, spec.freeze)
    model.language_model.model.gradient_checkpointing = spec.runtime.gradient_checkpointing
    model.train()
    heads.train()
    # Parallelism and adapters (FSDP2, LoRA) wrap the model here: after freezing, before the optimizer.
    params = [p for p in chain(model.parameters(), heads.parameters()) if p.requires_grad]
    o = spec.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    ema = None
    if o.ema_decay is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(o.ema_decay), use_buffers=False)

    step = 0
    out.mkdir(parents=True, exist_ok=True)
    run = {"spec": spec.model_dump(mode="json"), "data": data_args}
    if latest is not None:
        try:
            meta = load_checkpoint(latest, model, heads, optimizer, ema)
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
        data.load_state_dict(meta["data"])
    atomic_write_bytes(out / "run.json", json.dumps(run, indent=2).encode())
    log = Logbook(out, resume_after=step)

    while step < spec.max_steps:
        started = time.perf_counter()
        lr = lr_at(step, o)
        for group in optimizer.param_groups:
            group["lr"] = lr
        plans = next_plans(data, c, spec)
        packs = [
            build_pack(g, c.bagel.config, c.bagel.tokens, spec.sequence.vae_batching)
            for g in group_plans(plans, spec.max_tokens_per_pack)
        ]
        generator = torch.Generator().manual_seed(draw_seed(spec.seed, f"forward:{step}"))
        loss, terms = step_losses(c, packs, spec, generator, backward=True)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update_parameters(model)
        step += 1

        record = StepRecord(
            step=step,
            max_steps=spec.max_steps,
            lr=lr,
            loss=loss,
            terms=terms,
            grad_norm=float(grad_norm),
            samples=len(plans),
            packs=len(packs),
            tokens=sum(p.batch.length for p in packs),
            seconds=time.perf_counter() - started,
            skipped=dict(data.skipped),
        )
        if step % spec.log_every == 0 or step == spec.max_steps:
            log.write(record)
        if on_step is not None:
            on_step(record)
        if step % spec.checkpoint_every == 0 or step == spec.max_steps:
            meta = {"data": data.state_dict(), "data_args": data_args, "spec": run["spec"]}
            save_checkpoint(out, step, model, heads, optimizer, ema, meta, spec.keep_checkpoints)

    log.close()
    final = ema.module if ema is not None else model
    return export_inference(out, final, c.bagel.vae, c.bagel.folder, c.prompts)
