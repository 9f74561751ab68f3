"""What a training run writes: training checkpoints (exact resume) and the inference checkpoint.

A training checkpoint ``checkpoints/step-NNNNNNN/`` holds ``bagel.safetensors`` (every Bagel weight; with
LoRA the adapters only), ``heads.safetensors`` (mask decoder and projectors), ``ema.safetensors`` (the
averages of the trained parameters) when an EMA is kept, ``state.pt``
(optimizer state and RNG states, loaded with ``weights_only=True``) and ``meta.json`` (step, data position,
skip counts, spec). It is written under a temporary name and renamed, then ``checkpoints/latest`` is
replaced atomically, so a kill at any moment leaves the previous checkpoint intact.

A distributed run (torchrun, FSDP2) writes ``dcp/`` instead of the three safetensors files and
``state.pt``: Bagel's shards, the heads and the optimizer state through ``torch.distributed.checkpoint``
(each rank writes its own shards, the EMA's too; the folder must be on storage every node sees), with each rank's data
position and RNG states in ``meta.json``. It resumes on the same world size.

The inference checkpoint ``model/`` is Bagel in the official layout (``llm_config.json``,
``vit_config.json``, ``ema.safetensors``, ``ae.safetensors``, the tokenizer files of the initial model,
``groundedit_bagel.json``) plus ``intercog.json`` (the system prompts it was trained with). The auxiliary
modules are not in it: ``BagelEditor.from_pretrained`` and the official loaders read it strictly. Its
``ema.safetensors`` is written one tensor at a time in the initial file's dtype (bf16 for the official
release): a sharded model is gathered tensor by tensor, a LoRA run merges adapter by adapter (and writes the
adapter alone in ``model/adapter/``), so neither the GPU nor the host ever holds a second copy of the model.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from groundedit.faults import crash_point
from groundedit.formats.manifest import atomic_write_bytes
from groundedit.models.bagel import Bagel, save_bagel
from groundedit.models.bagel.loading import file_dtype

from .ema import EMA

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


def _new_checkpoint_dir(out: Path, step: int, tag: str) -> tuple[Path, Path, str]:
    root = out / CHECKPOINTS
    name = f"step-{step:07d}"
    final, tmp = root / name, root / f".{name}.tmp-{tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return final, tmp, name


def _publish(out: Path, final: Path, tmp: Path, name: str, keep: int) -> None:
    """Rename the finished checkpoint into place, point ``latest`` at it, prune old ones."""
    root = out / CHECKPOINTS
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_bytes(root / LATEST, name.encode())
    crash_point("train:checkpoint-written")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class TrainedModules(nn.Module):
    """Bagel and the heads under one root, so one distributed state dict names both (``bagel.*``,
    ``heads.*``) and matches the one optimizer over their parameters."""

    def __init__(self, bagel: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.bagel, self.heads = bagel, heads


class CheckpointManager:
    """When and how the training state is saved and restored (the shape of torchtitan's
    ``CheckpointManager``): one process writes safetensors files and ``state.pt``; several processes write
    ``torch.distributed.checkpoint`` shards. :meth:`save` and :meth:`restore` each branch on the world once.

    ``trainable_only`` (LoRA) keeps only Bagel's trained parameters: the frozen base is the initial
    model's, reloaded from it on resume.
    """

    def __init__(
        self,
        out: Path,
        world,
        modules: TrainedModules,
        optimizer: torch.optim.Optimizer,
        ema: EMA | None = None,
        *,
        every: int,
        keep: int,
        trainable_only: bool = False,
    ) -> None:
        self.out, self.world, self.modules, self.optimizer, self.ema = out, world, modules, optimizer, ema
        self.every, self.keep, self.trainable_only = every, keep, trainable_only

    def latest(self) -> Path | None:
        return latest_checkpoint(self.out)

    def due(self, step: int, last: bool) -> bool:
        return last or step % self.every == 0

    def save(self, step: int, meta: dict, data_state: dict) -> Path:
        """Write the state after ``step`` optimizer steps (every rank calls it); ``meta`` is the run's,
        ``data_state`` this rank's data position. Keeps the newest ``keep`` checkpoints."""
        if self.world.distributed:
            return self._save_sharded(step, meta, data_state)
        return self._save_local(step, {**meta, "data": data_state})

    def restore(self, path: Path) -> tuple[dict, dict]:
        """Load the checkpoint at ``path`` into the modules, optimizer and EMA (strict keys); returns
        ``meta.json`` and this rank's data position."""
        if self.world.distributed:
            meta, mine = self._restore_sharded(path)
            return meta, mine["data"]
        meta = self._restore_local(path)
        return meta, meta["data"]

    # -- one process ---------------------------------------------------------------------------------

    def _bagel_state(self) -> dict[str, torch.Tensor]:
        model = self.modules.bagel
        if not self.trainable_only:
            return _state(model)
        # Only the trained tensors are read (never a copy of the frozen base).
        return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}

    def _save_local(self, step: int, meta: dict) -> Path:
        final, tmp, name = _new_checkpoint_dir(self.out, step, str(os.getpid()))
        save_file(self._bagel_state(), str(tmp / "bagel.safetensors"))
        save_file(_state(self.modules.heads), str(tmp / "heads.safetensors"))
        if self.ema is not None:
            ema = {k: v.detach().contiguous().cpu() for k, v in self.ema.state_dict().items()}
            save_file(ema, str(tmp / "ema.safetensors"))
        torch.save({"optimizer": self.optimizer.state_dict(), "rng": _rng_state()}, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2))
        _publish(self.out, final, tmp, name, self.keep)
        return final

    def _restore_local(self, path: Path) -> dict:
        model, heads = self.modules.bagel, self.modules.heads
        state = load_file(str(path / "bagel.safetensors"), device=str(model.device))
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        if state.keys() == trained and len(trained) < len(model.state_dict()):
            model.load_state_dict(state, strict=False)  # trainable-only (LoRA): exactly the trained keys
        else:
            model.load_state_dict(state, strict=True)
        device = next(heads.parameters()).device
        heads.load_state_dict(load_file(str(path / "heads.safetensors"), device=str(device)), strict=True)
        if self.ema is not None:
            if not (path / "ema.safetensors").is_file():
                raise FileNotFoundError(f"{path} has no ema.safetensors but the spec keeps an EMA")
            self.ema.load_state_dict(load_file(str(path / "ema.safetensors"), device=str(model.device)))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        return json.loads((path / "meta.json").read_text())

    # -- several processes (FSDP2) -------------------------------------------------------------------

    def _save_sharded(self, step: int, meta: dict, data_state: dict) -> Path:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        world = self.world
        root = self.out / CHECKPOINTS
        name = f"step-{step:07d}"
        final, tmp = root / name, root / f".{name}.tmp-dcp"
        if world.main:
            final, tmp, name = _new_checkpoint_dir(self.out, step, "dcp")
        world.barrier()
        model_state, optim_state = get_state_dict(self.modules, self.optimizer)
        state = {"model": model_state, "optim": optim_state}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()  # sharded like the parameters
        dcp.save(state, checkpoint_id=str(tmp / "dcp"))
        ranks = world.gather({"data": data_state, "rng": _json_rng()})
        if world.main:
            (tmp / "meta.json").write_text(
                json.dumps({"step": step, "world_size": world.size, **meta, "ranks": ranks}, indent=2)
            )
            _publish(self.out, final, tmp, name, self.keep)
        world.barrier()
        return final

    def _restore_sharded(self, path: Path) -> tuple[dict, dict]:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        world = self.world
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("world_size") != world.size:
            raise ValueError(
                f"{path} was written by {meta.get('world_size', 1)} processes; resume it with as many "
                f"(--nproc-per-node), not {world.size}"
            )
        model_state, optim_state = get_state_dict(self.modules, self.optimizer)
        state = {"model": model_state, "optim": optim_state}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        dcp.load(state, checkpoint_id=str(path / "dcp"))  # in place, the EMA's shards included
        set_state_dict(
            self.modules, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
        mine = meta["ranks"][world.rank]
        random.setstate(_as_tuple(mine["rng"]["python"]))
        torch.set_rng_state(torch.tensor(mine["rng"]["torch"], dtype=torch.uint8))
        return meta, mine


def _json_rng() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state().tolist()}


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def export_inference(
    out: Path,
    model: Bagel,
    init_folder: Path,
    prompts: dict[str, str],
    tensors: Iterable[tuple[str, torch.Tensor]] | None = None,
    dtype: torch.dtype | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``out/model/`` in the official layout (see the module docstring), replacing it atomically.

    ``tensors`` (official names, the model's order) replace the model's own state (gathered, averaged or
    merged); they are written one at a time, floating ones in ``dtype`` (default: the dtype of the initial
    ``ema.safetensors``, bf16 for the official release). The VAE never trains: its file is copied.
    ``extra(folder)`` adds files.
    """
    final, tmp = out / MODEL_DIR, out / f".{MODEL_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    dtype = dtype or file_dtype(init_folder / "ema.safetensors")
    save_bagel(tmp, model, None, tensors=tensors, dtype=dtype)
    shutil.copy2(init_folder / "ae.safetensors", tmp / "ae.safetensors")
    if extra is not None:
        extra(tmp)
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
