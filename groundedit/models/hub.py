"""Where model weights come from: a local path, a Hugging Face id, or ``tiny://<name>``.

- ``tiny://<name>`` — a deterministic tiny random-weight model of the real architecture, built by a
  registered builder into the cache (``$GROUNDEDIT_CACHE``, default ``~/.cache/groundedit``) the
  first time it is asked for, under a file lock (parallel workers build it once), in the official
  on-disk format, then loaded by the same code as real weights. The cache key includes the
  builder's source, so editing a builder rebuilds its model.
- a path that exists — used as is.
- ``org/name`` — a Hugging Face repository id; ``hf://org/name/file`` — one file of one.

:func:`missing_models` is the preflight check: before any work it lists every model that is
neither local nor in the Hugging Face cache while the hub is unreachable, with how to get it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import inspect
import os
import shutil
from pathlib import Path

TINY_PREFIX = "tiny://"
WEIGHT_FILES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}  # a ref with one of these is a local file
HF_PREFIX = "hf://"

# name -> "module:function"; the function takes a destination folder and returns the path to load.
TINY_BUILDERS: dict[str, str] = {
    "lama": "groundedit.models.lama:build_tiny_lama",
    "qwen2_5_vl": "groundedit.models.chat.tiny:write_tiny_qwen25_vl",
    "qwen3": "groundedit.models.chat.tiny:write_tiny_qwen3",
    "ram_plus": "groundedit.models.perception.tiny:write_tiny_ram_plus",
    "grounding_dino": "groundedit.models.perception.tiny:write_tiny_grounding_dino",
    "sam": "groundedit.models.perception.tiny:write_tiny_sam",
    "bagel": "groundedit.models.bagel.tiny:write_tiny_bagel",
}


def cache_root() -> Path:
    return Path(os.environ.get("GROUNDEDIT_CACHE", Path.home() / ".cache" / "groundedit"))


def _builder(name: str):
    if name not in TINY_BUILDERS:
        raise ValueError(f"unknown tiny model '{name}' (known: {', '.join(sorted(TINY_BUILDERS))})")
    module, func = TINY_BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def quiet_loading() -> None:
    """Silence transformers' per-tensor loading bars (they would bury the run's progress display)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def tiny_path(name: str) -> Path:
    """Build (once) and return the tiny model ``name``."""
    builder = _builder(name)
    key = hashlib.sha256(inspect.getsource(inspect.getmodule(builder)).encode()).hexdigest()[:12]
    dest = cache_root() / "tiny" / f"{name}-{key}"
    done = dest / ".complete"
    if not done.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest.parent / f".{dest.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_file():
                tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                rel = Path(builder(tmp)).relative_to(tmp)
                (tmp / ".complete").write_text(str(rel))
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
    return dest / done.read_text()


def resolve(ref: str) -> str:
    """A loadable location for ``ref``: a local path (tiny models built on demand) or an HF id."""
    if ref.startswith(TINY_PREFIX):
        return str(tiny_path(ref[len(TINY_PREFIX) :]))
    if ref.startswith(HF_PREFIX):
        from huggingface_hub import hf_hub_download

        org, name, filename = ref[len(HF_PREFIX) :].split("/", 2)
        return hf_hub_download(f"{org}/{name}", filename)
    return ref


def _in_hf_cache(ref: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
    except ImportError:
        return False
    if ref.startswith(HF_PREFIX):
        parts = ref[len(HF_PREFIX) :].split("/", 2)
        return len(parts) == 3 and isinstance(try_to_load_from_cache(f"{parts[0]}/{parts[1]}", parts[2]), str)
    try:
        return any(r.repo_id == ref for r in scan_cache_dir().repos)
    except Exception:  # no cache folder yet
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def missing_models(refs: list[tuple[str, str, str]]) -> list[str]:
    """For ``(stage, role, ref)`` triples, one line per model that cannot be had right now."""
    missing = []
    looks_remote = []
    for stage, role, ref in refs:
        if ref.startswith(TINY_PREFIX):
            _builder(ref[len(TINY_PREFIX) :])  # unknown names fail here, before any work
            continue
        if Path(ref).exists():
            continue
        is_hf = ref.startswith(HF_PREFIX) or (
            ref.count("/") == 1
            and not ref.startswith((".", "/", "~"))
            and Path(ref).suffix not in WEIGHT_FILES
        )
        if not is_hf:
            missing.append(f"{stage}.{role}: {ref} (local file not found)")
        elif not _in_hf_cache(ref):
            looks_remote.append((stage, role, ref))
    if looks_remote and not hub_reachable():
        for stage, role, ref in looks_remote:
            hint = f"huggingface-cli download {ref}" if not ref.startswith(HF_PREFIX) else f"download {ref}"
            missing.append(
                f"{stage}.{role}: {ref} (not in the Hugging Face cache; hub unreachable; `{hint}`)"
            )
    return missing
