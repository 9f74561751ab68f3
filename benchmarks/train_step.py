"""Training-step throughput of Bagel: full fine-tuning and LoRA, on one 512² InterCoG sample per step.

    PYTHONPATH=. python benchmarks/train_step.py --device cuda --layers 4            # MFU at real width
    PYTHONPATH=. python benchmarks/train_step.py --device cuda --layers 28 --modes lora   # fits 80 GB?
    PYTHONPATH=. python benchmarks/train_step.py --device cpu --layers 1 --hidden 256 --vit-layers 1 \\
        --vae-ch 32 --image 64 --vocab 4096 --steps 1                              # smoke run anywhere

Random weights at the real Bagel width (hidden 3584, FFN 18944, 28/4 heads, vocab 152064), the real SigLIP
(27 layers on disk, 26 used) and FLUX VAE, with ``--layers`` decoder layers; ``--hidden`` and
``--vit-layers``, ``--vae-ch``, ``--image`` and ``--vocab`` shrink it for a smoke run (on CPU the peak memory is the
process's peak resident set so far, not per mode). The sample is the trainer's own InterCoG sequence (system
prompt, source VAE + ViT, instruction, textual grounding, grounded image generated, grounded VAE + ViT,
editing description, edited image generated), built by :class:`~groundedit.train.sequence.SequenceBuilder`
and run through the trainer's forward inputs with CE + MSE (the grounding heads and SAM are left out: a few
tens of MB of weights). Full fine-tuning keeps fp32 master weights under bf16 autocast with AdamW (as
``groundedit train``); LoRA freezes Bagel in bf16 and uses 8-bit AdamW when torchao or bitsandbytes is
installed. Activation checkpointing per layer is on (``--no-checkpointing`` turns it off).

MFU = model FLOPs / (step time × the GPU's bf16 dense peak: H100/H200 989 TFLOP/s). Model FLOPs are
counted from the config: 2 per multiply-add of every matmul, attention included (over the whole sample, not
halved for causality), × 3 for what is trained (forward, input and weight gradients), × 2 for frozen layers
that gradients pass through (LoRA's LM), × 1 for frozen layers before everything trained (LoRA's ViT). The
checkpointing recompute and the VAE encoder are not counted (MFU, not hardware FLOP utilisation).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer

from groundedit.models.bagel import Bagel, BagelConfig, FluxVAE, LoadedBagel, SpecialTokens
from groundedit.models.bagel.tiny import init_vae
from groundedit.models.tiny_tokenizer import build_tiny_tokenizer
from groundedit.train.examples import EditExample, Grounding
from groundedit.train.lora import add_lora
from groundedit.train.optim import build_optimizer
from groundedit.train.sequence import SequenceBuilder, build_pack
from groundedit.train.spec import CfgDropout, ImageRule, LoraSpec, SequenceSpec, load_train_spec
from groundedit.train.trainer import Components, forward_inputs

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0}
OFFICIAL = (
    "official Bagel fine-tuning, as users report it: >= 2x A100-80GB (OOM on one A100-80GB even with CPU\n"
    "offload); 80-85 s a step on 2x A100-40GB with offload; the maintainers fine-tuned on >= 32 GPUs; no LoRA."
)
COT = (
    "A living room with a grey sofa, a low wooden table and two lamps by the window.",
    "the smaller lamp on the right, standing on the floor next to the sofa's arm",
    "Recolor the lampshade of the right lamp to deep blue and leave the rest of the room as it is.",
    "The right lamp now has a deep blue shade; the sofa, table and the other lamp are unchanged.",
)


def bench_config(
    layers: int, hidden: int, vit_layers: int, vae_ch: int = 128, vocab: int = 152064
) -> BagelConfig:
    """Bagel's config with ``layers`` decoder layers; a smaller ``hidden`` keeps 128-wide heads and the
    FFN ratio."""
    base = BagelConfig()
    llm = base.llm
    heads = max(1, hidden // llm.head_dim) if hidden != llm.hidden_size else llm.num_attention_heads
    kv = llm.num_key_value_heads if hidden == llm.hidden_size else max(1, heads // 7)
    llm = dataclasses.replace(
        llm,
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=round(hidden * llm.intermediate_size / llm.hidden_size),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
    )
    vit = dataclasses.replace(base.vit, num_hidden_layers=vit_layers + 1)  # one is dropped when loaded
    vae = dataclasses.replace(base.vae, ch=vae_ch)
    return dataclasses.replace(base, llm=llm, vit=vit, vae=vae)


def example(side: int) -> EditExample:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(3)]
    mask = np.zeros((side, side), bool)
    mask[side // 4 : side // 2, side // 2 :] = True
    grounding = Grounding(images[1], mask, COT)
    return EditExample("bench", [images[0], images[2]], ["make the lamp on the right blue"], grounding)


def matmul_flops(config: BagelConfig, pack) -> dict[str, float]:
    """FLOPs of one forward's matrix products outside attention, by part (2 per multiply-add): what a
    ``FlopCounterMode`` counts for ``Bagel.forward`` on this pack (the test checks it)."""
    llm, vit = config.llm, config.vit
    d, q, kv = llm.hidden_size, llm.num_attention_heads * llm.head_dim, llm.num_key_value_heads * llm.head_dim
    batch = pack.batch
    vae_tokens = sum(h * w for h, w in batch.latent_grids)
    noised = sum(h * w for (h, w), t in zip(batch.latent_grids, batch.timesteps, strict=True) if t != 0.0)
    vit_tokens, dv = sum(batch.vit_seqlens), vit.hidden_size
    per_token = 2 * llm.num_hidden_layers * (2 * d * q + 2 * d * kv + 3 * d * llm.intermediate_size)
    vit_per_token = 2 * vit.layers_used * (4 * dv * dv + 2 * dv * vit.intermediate_size)
    return {
        "lm": per_token * batch.length + 2 * d * llm.vocab_size * int(batch.ce_index.numel()),
        "latents": 2 * vae_tokens * (config.latent_token_dim * d + 256 * d + d * d)
        + 2 * noised * d * config.latent_token_dim,
        "vit": vit_tokens * (vit_per_token + 2 * 3 * vit.patch_size**2 * dv + 2 * (dv * d + d * d)),
    }


def attention_flops(config: BagelConfig, pack) -> dict[str, float]:
    """FLOPs of QK^T and AV over each sample's whole length (model FLOPs: not what the split-wise kernels
    skip) and over each ViT image."""
    llm, vit = config.llm, config.vit
    q = llm.num_attention_heads * llm.head_dim
    lm = sum(2 * 2 * (e - s) ** 2 * q for s, e in pack.batch.samples) * llm.num_hidden_layers
    vision = sum(2 * 2 * n * n * vit.hidden_size for n in pack.batch.vit_seqlens) * vit.layers_used
    return {"lm": lm, "vit": vision}


def count_flops(config: BagelConfig, pack, lora: bool) -> float:
    """Model FLOPs of one training step on ``pack`` (see the module docstring)."""
    mm, att = matmul_flops(config, pack), attention_flops(config, pack)
    lm, vision = mm["lm"] + mm["latents"] + att["lm"], mm["vit"] + att["vit"]
    return (2 * lm + vision) if lora else 3 * (lm + vision)


def build(config: BagelConfig, device: torch.device, side: int) -> tuple[Components, object]:
    tok_dir = build_tiny_tokenizer(tempfile.mkdtemp())
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    with torch.device("meta"):
        model, vae = Bagel(config), FluxVAE(config.vae)
    model.to_empty(device=device)
    vae.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    model.init_weights(generator)
    init_vae(vae, generator)
    vae.requires_grad_(False).eval()
    bagel = LoadedBagel(model, vae, tokenizer, SpecialTokens.from_tokenizer(tokenizer), config, tok_dir)
    vit_side = max(224, round(side / 14) * 14)
    spec = SequenceSpec(
        cfg_dropout=CfgDropout(text=0.0, vit=0.0, vae=0.0),
        vae_image=ImageRule(max_size=side, min_size=side, stride=16),
        vit_image=ImageRule(max_size=vit_side, min_size=vit_side, stride=14),
    )
    system = "You edit images. First locate the target and draw it, then describe and make the edit."
    builder = SequenceBuilder(tokenizer, config, spec, system, system)
    c = Components(bagel, None, None, builder, device)
    plan = builder.plan(example(side), random.Random(0))
    return c, build_pack([plan], config, bagel.tokens)


def run(mode: str, args, device: torch.device) -> dict:
    config = bench_config(args.layers, args.hidden, args.vit_layers, args.vae_ch, args.vocab)
    c, pack = build(config, device, args.image)
    model = c.bagel.model
    model.set_gradient_checkpointing(not args.no_checkpointing)
    model.train()
    lora = mode == "lora"
    if lora:
        if device.type == "cuda":
            model.to(torch.bfloat16)  # the trainer loads the frozen base straight in bf16
        add_lora(model, LoraSpec(rank=args.lora_rank, alpha=2.0 * args.lora_rank))
    params = [p for p in model.parameters() if p.requires_grad]
    eight_bit = lora and device.type == "cuda"
    optim = {"lr": 1e-5, "warmup_steps": 0, "eight_bit": eight_bit}
    spec = load_train_spec(overrides={"optim": optim, "lora": {"enabled": lora, "lr": None}})
    optimizer = build_optimizer(params, spec, device)
    cuda = device.type == "cuda"
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        latents, noise = forward_inputs(c, pack, 0, f"bench:{step}")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(pack.batch.to(device), latents=latents, noise=noise)
        (out.ce + out.mse).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    flops = count_flops(config, pack, lora)
    peak = None
    if cuda:
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB → GiB, the process's peak
    )
    return {
        "mode": mode,
        "tokens": pack.batch.length,
        "seconds": seconds,
        "tokens_per_s": pack.batch.length / seconds,
        "peak_gib": memory,
        "tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / (peak * 1e12) if peak else None,
        "trainable_m": sum(p.numel() for p in params) / 1e6,
        "optimizer": type(optimizer).__name__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=4, help="decoder layers (Bagel has 28)")
    ap.add_argument("--hidden", type=int, default=3584, help="LM width (Bagel: 3584)")
    ap.add_argument("--vocab", type=int, default=152064, help="vocabulary (Bagel: 152064)")
    ap.add_argument("--vit-layers", type=int, default=26, help="SigLIP layers used (Bagel: 26)")
    ap.add_argument(
        "--vae-ch", type=int, default=128, help="FLUX VAE base channels, a multiple of 32 (FLUX: 128)"
    )
    ap.add_argument("--image", type=int, default=512, help="side of the square images")
    ap.add_argument("--modes", default="full,lora", help="comma-separated: full, lora")
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-checkpointing", action="store_true", help="no activation checkpointing")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(
        f"train step: {args.layers} layers, hidden {args.hidden}, ViT {args.vit_layers} layers, one "
        f"{args.image}² InterCoG sample a step, {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"{'mode':6} {'tokens':>7} {'step s':>8} {'tok/s':>9} {'peak GiB':>9} {'TFLOP/s':>8} {'MFU':>6}  trainable"
    )
    for mode in args.modes.split(","):
        r = run(mode.strip(), args, device)
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(
            f"{r['mode']:6} {r['tokens']:7d} {r['seconds']:8.3f} {r['tokens_per_s']:9.0f} {r['peak_gib']:9.2f} "
            f"{r['tflops']:8.2f} {mfu:>6}  {r['trainable_m']:.1f}M ({r['optimizer']})"
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(OFFICIAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
