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


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["attention"])
    ap.add_argument("--tokens", type=int, default=13500)
    ap.add_argument("--path", choices=["dense", "split", "both"], default="both")
    ap.add_argument("--json", action="store_true", help="one measurement, printed as JSON (subprocess use)")
    args = ap.parse_args(argv)
    if args.command == "attention":
        if args.json:
            print(json.dumps({"peak": attention_peak(args.tokens, args.path)}))
            return 0
        print(f"attention of one Bagel-7B-MoT layer, one InterCoG sample of {args.tokens} tokens, fp32, CPU")
        for path in ("dense", "split"):
            peak = in_subprocess("attention", tokens=args.tokens, path=path)["peak"]
            print(f"  {path:6} peak above start: {peak / 2**20:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
