"""Latency, peak memory and achieved TFLOP/s of Bagel edits (random weights, real or tiny size).

    PYTHONPATH=. python benchmarks/bagel_edit.py --config full --device cuda      # on a GPU machine
    PYTHONPATH=. python benchmarks/bagel_edit.py --config tiny --device cpu       # smoke run anywhere

Cases: one edit at each ``--sizes`` side (square), then ``--batch`` edits at the first size in one call;
``--steps`` Euler steps with full CFG (text 4, image 2, interval [0, 1]). FLOPs are counted analytically
(2 per multiply-add of every matmul, attention included, VAE and ViT included in the edit total); the
denoising loop is timed on its own, which is where the time goes.

Measured on one H100 80GB HBM3 (torch 2.11, bf16, 50 steps, full CFG; peak 989 TFLOP/s dense):

    case        latency   per edit   peak mem   TFLOP/s (% peak) edit / denoise loop
    1 x 512²     4.29 s    4.29 s    30.8 GB    505 (51.0%) / 525 (53.1%)
    1 x 1024²   18.29 s   18.29 s    34.2 GB    573 (57.9%) / 579 (58.6%)
    8 x 512²    29.87 s    3.73 s    39.3 GB    580 (58.7%) / 590 (59.7%)

The official implementation (SDPA) takes 15.1 s / 29 GB (512²) and 29.8 s / 32 GB (1024²) there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer

import groundedit.models.bagel.blocks as blocks
import groundedit.models.bagel.inference as inference
from groundedit.models.bagel import (
    Bagel,
    BagelConfig,
    BagelEditor,
    FluxVAE,
    LoadedBagel,
    SpecialTokens,
    tiny_config,
)
from groundedit.models.bagel.attention import attention_backend
from groundedit.models.bagel.tiny import init_vae
from groundedit.models.tiny_tokenizer import build_tiny_tokenizer

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0}
INSTRUCTION = "Change the color of the car on the left to blue."


def build(config_name: str, device: torch.device, dtype: torch.dtype) -> BagelEditor:
    """A random-weight editor; the tiny tokenizer stands in (only prompt length matters here)."""
    tok_dir = build_tiny_tokenizer(tempfile.mkdtemp())
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    config = tiny_config(len(tokenizer)) if config_name == "tiny" else BagelConfig()
    with torch.device("meta"):
        model, vae = Bagel(config).to(dtype), FluxVAE(config.vae).to(dtype)
    model.to_empty(device=device)
    vae.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    model.init_weights(generator)
    init_vae(vae, generator)
    bundle = LoadedBagel(
        model.eval(), vae.eval(), tokenizer, SpecialTokens.from_tokenizer(tokenizer), config, tok_dir
    )
    return BagelEditor(bundle)


@dataclass
class Flops:
    denoise: float = 0.0
    total: float = 0.0


def count_flops(config: BagelConfig, side: int, text_len: int, steps: int, batch: int) -> Flops:
    """Analytical FLOPs of ``batch`` edits of a side×side image (three CFG branches every step)."""
    llm, vit = config.llm, config.vit
    q_dim, kv_dim = llm.num_attention_heads * llm.head_dim, llm.num_key_value_heads * llm.head_dim
    per_token = llm.num_hidden_layers * (
        llm.hidden_size * (2 * q_dim + 2 * kv_dim) + 3 * llm.hidden_size * llm.intermediate_size
    )

    def forward(q: int, k: int) -> float:  # q new tokens attending to k keys (new ones included)
        return 2 * q * per_token + 4 * q * k * q_dim * llm.num_hidden_layers

    w, h = config.vae_image.target_size(side, side)
    vw, vh = config.vit_image.target_size(w, h)
    n_lat = (w // config.latent_downsample) * (h // config.latent_downsample)
    n_vit = (vw // vit.patch_size) * (vh // vit.patch_size)
    vae_len, vit_len, txt = n_lat + 2, n_vit + 2, text_len + 2
    prefill = forward(vae_len, vae_len) + forward(vit_len, vae_len + vit_len)
    prefill += forward(txt, vae_len + vit_len + txt) + forward(txt, txt)
    vit_layer = 2 * n_vit * (4 * vit.hidden_size**2 + 2 * vit.hidden_size * vit.intermediate_size)
    vit_layer += 4 * n_vit * n_vit * vit.hidden_size
    q = n_lat + 2
    ctx = (vae_len + vit_len + txt, vae_len + vit_len, txt)
    step = sum(forward(q, c + q) for c in ctx) + 3 * 2 * 2 * n_lat * llm.hidden_size * config.latent_token_dim
    denoise = (steps - 1) * step
    return Flops(
        batch * denoise, batch * (denoise + prefill + vit.layers_used * vit_layer + vae_flops(config, w, h))
    )


def vae_flops(config: BagelConfig, width: int, height: int) -> float:
    """Encode + decode FLOPs of one image, counted by torch on a meta-device VAE (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = FluxVAE(config.vae)
        x = torch.empty(1, 3, height, width)
        with FlopCounterMode(display=False) as counter:
            vae.decode(vae.encode(x, sample=False))
    return float(counter.get_total_flops())


def timed_denoise(store: dict):
    """Wrap the sampler so the denoising loop is timed separately (synchronising the device)."""
    original = inference.denoise

    def wrapper(model, *args, **kwargs):
        sync(model.device)
        start = time.perf_counter()
        out = original(model, *args, **kwargs)
        sync(model.device)
        store["denoise_s"] = time.perf_counter() - start
        return out

    inference.denoise = wrapper


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(editor: BagelEditor, side: int, batch: int, steps: int, peak: float | None, store: dict) -> dict:
    dev = editor.model.device
    rng = np.random.default_rng(side)
    images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(batch)]
    editor.edit(images, [INSTRUCTION] * batch, steps=3, batch_size=batch)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev)
    start = time.perf_counter()
    editor.edit(images, [INSTRUCTION] * batch, steps=steps, batch_size=batch)
    sync(dev)
    seconds = time.perf_counter() - start
    text_len = len(editor.tokenizer.encode(INSTRUCTION, add_special_tokens=False))
    flops = count_flops(editor.config, side, text_len, steps, batch)
    row = {
        "case": f"{batch}x{side}^2",
        "fused_pointwise": blocks.fused_status(),
        "latency_s": round(seconds, 3),
        "per_edit_s": round(seconds / batch, 3),
        "denoise_s": round(store["denoise_s"], 3),
        "pflop_total": round(flops.total / 1e15, 3),
        "tflops_total": round(flops.total / seconds / 1e12, 1),
        "tflops_denoise": round(flops.denoise / store["denoise_s"] / 1e12, 1),
    }
    if dev.type == "cuda":
        row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(dev) / 1e9, 2)
    if peak:
        row["pct_peak_total"] = round(100 * row["tflops_total"] / peak, 1)
        row["pct_peak_denoise"] = round(100 * row["tflops_denoise"] / peak, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["full", "tiny"], default="full")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--fused", choices=["on", "off"], default="on", help="compiled pointwise kernels on CUDA")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    t0 = time.perf_counter()
    editor = build(args.config, dev, dtype)
    sync(dev)
    print(
        json.dumps(
            {
                "device": name,
                "torch": torch.__version__,
                "config": args.config,
                "init_s": round(time.perf_counter() - t0, 1),
            }
        )
    )
    store: dict = {}
    timed_denoise(store)
    blocks.apply_rope.enabled = blocks.silu_mul.enabled = args.fused == "on"
    cases = [(s, 1) for s in args.sizes] + ([(args.sizes[0], args.batch)] if args.batch > 1 else [])
    for side, batch in cases:
        print(json.dumps(run_case(editor, side, batch, args.steps, peak, store)), flush=True)
    print(json.dumps({"attention": attention_backend(), "bf16_peak_tflops": peak}))


if __name__ == "__main__":
    main()
