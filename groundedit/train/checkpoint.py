"""What a training run writes: training checkpoints (exact resume) and the inference checkpoint.

A training checkpoint ``checkpoints/step-NNNNNNN/`` holds ``bagel.safetensors`` (every Bagel weight),
``heads.safetensors`` (mask decoder and projectors), ``ema.safetensors`` when an EMA is kept, ``state.pt``
(optimizer state and RNG states, loaded with ``weights_only=True``) and ``meta.json`` (step, data position,
skip counts, spec). It is written under a temporary name and renamed, then ``checkpoints/latest`` is
replaced atomically, so a kill at any moment leaves the previous checkpoint intact.

The inference checkpoint ``model/`` is Bagel in the official layout (``llm_config.json``,
``vit_config.json``, ``ema.safetensors``, ``ae.safetensors``, the tokenizer files of the initial model,
``groundedit_bagel.json``) plus ``intercog.json`` (the system prompts it was trained with). The auxiliary
modules are not in it: ``BagelEditor.from_pretrained`` and the official loaders read it strictly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from groundedit.faults import crash_point
from groundedit.manifest import atomic_write_bytes
from groundedit.models.bagel import Bagel, FluxVAE, save_bagel

CHECKPOINTS, LATEST, MODEL_DIR = "checkpoints", "latest", "model"
INTERCOG_FILE = "intercog.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint ``checkpoints/latest`` names, if any."""
    pointer = out / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    path = out / CHECKPOINTS / pointer.read_text().strip()
    return path if (path / "meta.json").is_file() else None


def save_checkpoint(
    out: Path,
    step: int,
    model: Bagel,
    heads: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    meta: dict,
    keep: int,
) -> Path:
    """Write the training state after ``step`` optimizer steps; keep the newest ``keep`` checkpoints."""
    root = out / CHECKPOINTS
    name = f"step-{step:07d}"
    final, tmp = root / name, root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state(model), str(tmp / "bagel.safetensors"))
    save_file(_state(heads), str(tmp / "heads.safetensors"))
    if ema is not None:
        save_file(_state(ema.module), str(tmp / "ema.safetensors"))
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_bytes(root / LATEST, name.encode())
    crash_point("train:checkpoint-written")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)
    return final


def load_checkpoint(
    path: Path, model: Bagel, heads: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None
) -> dict:
    """Restore everything :func:`save_checkpoint` wrote (strict keys); returns ``meta.json``."""
    model.load_state_dict(load_file(str(path / "bagel.safetensors"), device=str(model.device)), strict=True)
    device = next(heads.parameters()).device
    heads.load_state_dict(load_file(str(path / "heads.safetensors"), device=str(device)), strict=True)
    if ema is not None:
        if not (path / "ema.safetensors").is_file():
            raise FileNotFoundError(f"{path} has no ema.safetensors but the spec keeps an EMA")
        ema.module.load_state_dict(load_file(str(path / "ema.safetensors"), device=str(model.device)))
        ema.n_averaged.fill_(1)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(_as_tuple(state["rng"]["python"]))
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return json.loads((path / "meta.json").read_text())


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def export_inference(
    out: Path, model: Bagel, vae: FluxVAE, init_folder: Path, prompts: dict[str, str]
) -> Path:
    """Write ``out/model/`` in the official layout (see the module docstring), replacing it atomically."""
    final, tmp = out / MODEL_DIR, out / f".{MODEL_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_bagel(tmp, model, vae)
    for name in TOKENIZER_FILES:
        if (init_folder / name).is_file():
            shutil.copy2(init_folder / name, tmp / name)
    (tmp / INTERCOG_FILE).write_text(json.dumps(prompts, indent=2))
    if final.exists():
        old = out / f".{MODEL_DIR}.old-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final
