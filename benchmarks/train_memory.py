"""Training memory, measured on the CPU: attention of one layer, activations, host memory at load/export.

    PYTHONPATH=. python benchmarks/train_memory.py attention --tokens 13500      # dense mask vs split-wise
    PYTHONPATH=. python benchmarks/train_memory.py activations --layers 2 --tokens 1024
    PYTHONPATH=. python benchmarks/train_memory.py host --layers 1 --vocab 32768

Every figure is the peak resident memory of a fresh process above what it held before the measured work
(Linux: ``/proc/self/clear_refs`` resets the high-water mark, ``VmHWM`` reads it), so one measurement
never sees another's pages.

* ``attention``: queries, keys and values of one Bagel-7B-MoT layer (28 heads over 4 KV heads of 128) for
  one InterCoG sample of ``--tokens`` tokens, forward and backward, with the dense [L, L] mask the packer
  used to build (and SDPA to read) against the split-wise segments that replaced it.
* ``activations``: a real-width model cut to ``--layers`` decoder layers (and one SigLIP layer), one
  training forward and backward, against :func:`groundedit.train.plan.activation_bytes`.
* ``host``: peak host memory while a meta-built model is loaded from an official-layout bf16 folder and
  while ``ema.safetensors`` is exported, against the bf16 size of the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_above_now(fn: Callable[[], object]) -> tuple[int, object]:
    """Run ``fn``; the peak resident bytes it added above the process's current resident set."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    before = _status("VmRSS")
    result = fn()
    return _status("VmHWM") - before, result


def in_subprocess(command: str, **options) -> dict:
    """Run one measurement of this file in a fresh interpreter; its JSON result."""
    argv = [
        sys.executable,
        __file__,
        command,
        "--json",
        *(f"--{k.replace('_', '-')}={v}" for k, v in options.items()),
    ]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- attention -------------------------------------------------------------------------------------------

# An InterCoG sample's splits as shares of its length (system prompt, source VAE + ViT, instruction,
# grounding text, grounded noised, grounded VAE + ViT, description, edited noised) at ~1024² images.
_SHARES = [
    (0.01, "causal"),
    (0.3, "full"),
    (0.09, "full"),
    (0.005, "causal"),
    (0.01, "causal"),
    (0.1, "noise"),
    (0.1, "full"),
    (0.09, "full"),
    (0.01, "causal"),
    (0.285, "noise"),
]


def intercog_splits(tokens: int) -> tuple[list[int], list[str]]:
    lens = [max(1, int(share * tokens)) for share, _ in _SHARES]
    lens[-1] += tokens - sum(lens)
    return lens, [mode for _, mode in _SHARES]


def attention_peak(tokens: int, path: str, heads: int = 28, kv_heads: int = 4, head_dim: int = 128) -> int:
    from groundedit.models.bagel.attention import Segment, attend, split_segments
    from groundedit.models.bagel.packing import sample_mask

    torch.set_num_threads(max(1, torch.get_num_threads()))
    g = torch.Generator().manual_seed(0)
    q = torch.randn(tokens, heads, head_dim, generator=g, requires_grad=True)
    k = torch.randn(tokens, kv_heads, head_dim, generator=g, requires_grad=True)
    v = torch.randn(tokens, kv_heads, head_dim, generator=g, requires_grad=True)
    lens, modes = intercog_splits(tokens)

    def step():
        if path == "dense":
            segments = [Segment(slice(0, tokens), slice(0, tokens), sample_mask(lens, modes))]
        else:
            segments = split_segments(0, lens, modes)
        attend(q, k, v, segments).sum().backward()

    peak, _ = peak_above_now(step)
    return peak


# -- activations -------------------------------------------------------------------------------------------


def real_width_config(layers: int, vocab: int = 16384, vit_layers: int = 1):
    """Bagel-7B-MoT's widths (LM 3584 / FFN 18944 / 28 over 4 heads, SigLIP 1152 / 4304) with ``layers``
    decoder layers, ``vit_layers`` SigLIP layers and a smaller vocabulary (the embedding tables are not
    activations; a real-size one would only make the process heavier)."""
    import dataclasses

    from groundedit.models.bagel import BagelConfig
    from groundedit.models.bagel.config import VAEConfig

    base = BagelConfig()
    llm = dataclasses.replace(base.llm, num_hidden_layers=layers, vocab_size=vocab)
    vit = dataclasses.replace(base.vit, num_hidden_layers=vit_layers + 1)  # one is dropped when loaded
    vae = VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)
    return dataclasses.replace(base, llm=llm, vit=vit, vae=vae)


def activation_peak(layers: int, checkpointing: bool, side: int) -> dict:
    """Peak memory of one training forward and backward of a real-width pack (an InterCoG-like sample:
    text, a clean and a noised ``side``² VAE image, a 224² ViT image, text with CE) against the plan's
    estimate. Gradients flow through every layer to the first ones, but only two small weights receive
    one (weight gradients are the plan's 'gradients', not activations)."""
    from groundedit.models.bagel import Bagel, SequencePacker, SpecialTokens
    from groundedit.train.memory import PackShape, activation_bytes

    config = real_width_config(layers)
    with torch.device("meta"):
        model = Bagel(config)
    model.to_empty(device="cpu")
    model.init_weights(torch.Generator().manual_seed(0))
    model.train()
    model.set_gradient_checkpointing(checkpointing)
    g = torch.Generator().manual_seed(1)
    p = SequencePacker(config, SpecialTokens(1, 2, 3, 4))
    p.add_text(list(range(10, 60)))
    p.add_vae_image(torch.rand(3, side, side, generator=g) * 2 - 1)
    p.add_vit_image(torch.rand(3, 224, 224, generator=g) * 2 - 1)
    p.add_text(list(range(10, 30)))
    p.add_text(list(range(10, 110)), loss=True)
    p.add_vae_image(torch.rand(3, side, side, generator=g) * 2 - 1, noised=True)
    p.end_sample()
    batch = p.build()
    latents = [torch.randn(16, side // 8, side // 8, generator=g) for _ in batch.vae_images]
    wanted = [model.vae2llm.weight, model.vit_model.vision_model.embeddings.patch_embedding.weight]

    def step():
        out = model(
            batch, latents=latents, hidden_layers={layers}, generator=torch.Generator().manual_seed(2)
        )
        loss = out.ce + out.mse + out.hidden_states[layers].float().pow(2).mean()
        torch.autograd.grad(loss, wanted)

    measured, _ = peak_above_now(step)
    noised = sum(h * w for (h, w), t in zip(batch.latent_grids, batch.timesteps, strict=True) if t != 0.0)
    pack = PackShape(
        batch.length,
        sum(h * w for h, w in batch.latent_grids),
        noised,
        sum(batch.vit_seqlens),
        batch.ce_index.numel(),
    )
    estimate = activation_bytes(config, pack, 4, checkpointing, device="cpu")
    return {"tokens": batch.length, "measured": measured, "estimate": estimate}


# -- host memory at load and export ------------------------------------------------------------------------


def write_folder(folder: Path, layers: int, vocab: int) -> int:
    """A random real-width Bagel in the official layout, ``ema.safetensors`` in bf16, written one tensor at
    a time (never whole in memory); returns its size in bytes."""
    from groundedit.models.bagel import Bagel, FluxVAE, save_bagel
    from groundedit.models.bagel.loading import official_entries
    from groundedit.models.bagel.tiny import init_vae
    from groundedit.models.tiny_tokenizer import build_tiny_tokenizer

    config = real_width_config(layers, vocab)
    g = torch.Generator().manual_seed(0)
    entries = official_entries(config, torch.bfloat16)
    tensors = (
        (name, torch.randn(shape, generator=g, dtype=torch.bfloat16) * 0.02) for name, shape, _ in entries
    )
    with torch.device("meta"):
        meta = Bagel(config)
    vae = FluxVAE(config.vae)
    init_vae(vae, g)
    save_bagel(folder, meta, vae, tensors=tensors, dtype=torch.bfloat16)
    build_tiny_tokenizer(folder)
    return (folder / "ema.safetensors").stat().st_size


def host_peaks(folder: Path, out: Path) -> dict:
    """Peak resident memory (above the process's start) while the meta-built model is loaded in bf16 and
    its weights are touched, then while ``ema.safetensors`` is exported from it."""
    import transformers.models.auto  # noqa: F401  (imported before the baseline: not the model's memory)

    from groundedit.models.bagel import load_bagel, save_bagel

    def load():
        bagel = load_bagel(folder, device="cpu", dtype=torch.bfloat16)
        with torch.no_grad():
            for p in bagel.model.parameters():
                p.sum()  # every page of every weight is read: the model is resident
        return bagel

    loading, bagel = peak_above_now(load)
    start = _status("VmRSS") - loading  # the same baseline for the export
    Path("/proc/self/clear_refs").write_text("5")
    save_bagel(out, bagel.model, None, dtype=torch.bfloat16)
    exporting = _status("VmHWM") - start
    return {"loading": loading, "exporting": exporting}


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["attention", "activations", "host"])
    ap.add_argument("--tokens", type=int, default=13500, help="attention: tokens of the sample")
    ap.add_argument("--path", choices=["dense", "split"], default="split", help="attention, with --json")
    ap.add_argument("--layers", type=int, default=1, help="activations / host: decoder layers")
    ap.add_argument("--checkpointing", type=int, default=0, help="activations: 1 = activation checkpointing")
    ap.add_argument("--side", type=int, default=256, help="activations: side of the VAE images")
    ap.add_argument("--vocab", type=int, default=32768, help="host: vocabulary (embedding tables)")
    ap.add_argument("--folder", default="", help="host, with --json: the folder to load")
    ap.add_argument("--json", action="store_true", help="one measurement, printed as JSON (subprocess use)")
    args = ap.parse_args(argv)
    if args.json:
        if args.command == "attention":
            result = {"peak": attention_peak(args.tokens, args.path)}
        elif args.command == "activations":
            result = activation_peak(args.layers, bool(args.checkpointing), args.side)
        else:
            result = host_peaks(Path(args.folder), Path(args.folder) / "export")
        print(json.dumps(result))
        return 0
    if args.command == "attention":
        print(f"attention of one Bagel-7B-MoT layer, one InterCoG sample of {args.tokens} tokens, fp32, CPU")
        for path in ("dense", "split"):
            peak = in_subprocess("attention", tokens=args.tokens, path=path)["peak"]
            print(f"  {path:6} peak above start: {peak / 2**20:8.1f} MiB")
    elif args.command == "activations":
        r = in_subprocess("activations", layers=args.layers, checkpointing=args.checkpointing, side=args.side)
        print(
            f"activations, real width, {args.layers} layer(s), checkpointing {bool(args.checkpointing)}, "
            f"{r['tokens']} tokens: measured {r['measured'] / 2**20:.1f} MiB, "
            f"estimated {r['estimate'] / 2**20:.1f} MiB ({r['estimate'] / r['measured'] - 1:+.1%})"
        )
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            size = write_folder(Path(tmp), args.layers, args.vocab)
            r = in_subprocess("host", folder=tmp)
        print(f"host memory, real width, {args.layers} layer(s): bf16 model {size / 2**30:.2f} GiB")
        for phase in ("loading", "exporting"):
            print(
                f"  {phase:9} peak above start {r[phase] / 2**30:.2f} GiB ({r[phase] / size:.2f}x the bf16 size)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
