"""Where model weights come from: a local path, a Hugging Face id, or ``tiny://<name>``.

- ``tiny://<name>`` — a deterministic tiny random-weight model of the real architecture, built by a
  registered builder into the cache (``$GROUNDEDIT_CACHE``, default ``~/.cache/groundedit``) the
  first time it is asked for, under a file lock (parallel workers build it once), in the official
  on-disk format, then loaded by the same code as real weights. The cache key includes the
  builder's source, so editing a builder rebuilds its model.
- a path that exists — used as is.
- ``org/name`` — a Hugging Face repository id; ``hf://org/name/file`` — one file of one.

:func:`missing_requirements` is the preflight check: before any work it lists every model, file and
package a run's stages will read (their :class:`Requirement` s) that cannot be had — a model neither
local nor in the Hugging Face cache while the hub is unreachable, a file not on disk, a package not
installed — each with the exact command that gets it (:func:`how_to_get`). ``groundedit doctor``
shows the same requirements, found or not.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import inspect
import os
import shutil
from dataclasses import dataclass
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
    from groundedit.models import tiny_tokenizer

    # the tiny LMs' tokenizer lives in its own module: a change there must rebuild them too
    code = inspect.getsource(inspect.getmodule(builder)) + inspect.getsource(tiny_tokenizer)
    key = hashlib.sha256(code.encode()).hexdigest()[:12]
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


def local_file(ref: str) -> Path | None:
    """Where ``ref`` already lies on this machine (a local path, or a hub file in the cache), else None.

    Tiny models count as not on disk: they are built on first use, not by a check.
    """
    if ref.startswith(TINY_PREFIX):
        return None
    if ref.startswith(HF_PREFIX):
        from huggingface_hub import try_to_load_from_cache

        org, name, filename = ref[len(HF_PREFIX) :].split("/", 2)
        cached = try_to_load_from_cache(f"{org}/{name}", filename)
        return Path(cached) if isinstance(cached, str) else None
    path = Path(ref).expanduser()
    return path if path.exists() else None


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


# --- what a run needs, and how to get it ------------------------------------------------------

# Where files that no Hugging Face repository holds come from: file name -> URL.
KNOWN_SOURCES = {
    # The TorchScript export of big-lama that IOPaint (lama-cleaner) publishes and loads with the same
    # (image, mask) -> image call in [0, 1] that models/lama.py makes; ~196 MiB.
    "big-lama.pt": "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
}


@dataclass(frozen=True)
class Requirement:
    """Something a stage will read: a model ref (``kind="model"``), a local file, or a package.

    ``fix`` is the command or step that gets it when it is missing (default: :func:`how_to_get`).
    """

    stage: str
    role: str
    ref: str
    kind: str = "model"  # "model" | "file" | "package"
    fix: str | None = None


@dataclass(frozen=True)
class Availability:
    """``state``: tiny, local, cached, installed, downloadable (hub reachable, not cached), missing."""

    state: str
    detail: str
    fix: str | None = None


def is_hf_ref(ref: str) -> bool:
    """A Hugging Face repo id (``org/name``) or one file of one (``hf://org/name/file``)."""
    return ref.startswith(HF_PREFIX) or (
        ref.count("/") == 1 and not ref.startswith((".", "/", "~")) and Path(ref).suffix not in WEIGHT_FILES
    )


def how_to_get(ref: str) -> str:
    """The exact command (or step) that puts ``ref`` where a run will find it."""
    if ref.startswith(HF_PREFIX):
        org, name, filename = ref[len(HF_PREFIX) :].split("/", 2)
        return f"hf download {org}/{name} {filename}"
    if is_hf_ref(ref):
        return f"hf download {ref}"
    url = KNOWN_SOURCES.get(Path(ref).name)
    if url:
        return f"curl -L --create-dirs -o {Path(ref).expanduser().absolute()} {url}"
    return "put it there, or point the stage spec at where it is"


def availability(req: Requirement, hub_up: bool | None = None) -> Availability:
    """Whether ``req`` can be had now. ``hub_up`` (None: probe only if needed) tells whether a model
    missing from the Hugging Face cache can still be downloaded at run time."""
    ref, fix = req.ref, req.fix
    if req.kind == "package":
        import importlib.util

        if importlib.util.find_spec(ref) is not None:
            return Availability("installed", "installed")
        return Availability("missing", "not installed", fix or f"pip install {ref}")
    if ref.startswith(TINY_PREFIX):
        _builder(ref[len(TINY_PREFIX) :])  # unknown names fail here, before any work
        return Availability("tiny", "tiny model, built on first use")
    if Path(ref).expanduser().exists():
        return Availability("local", "found")
    if req.kind == "file" or not is_hf_ref(ref):
        return Availability("missing", "local file not found", fix or how_to_get(ref))
    if _in_hf_cache(ref):
        return Availability("cached", "in the Hugging Face cache")
    if hub_up is None:
        hub_up = hub_reachable()
    if hub_up:
        return Availability("downloadable", "not cached; downloaded at run time", fix or how_to_get(ref))
    return Availability("missing", "not in the Hugging Face cache; hub unreachable", fix or how_to_get(ref))


def missing_requirements(reqs: list[Requirement]) -> list[str]:
    """The preflight check: one line per requirement that cannot be had right now, with its fix.

    The hub is probed only when some Hugging Face model is not in the cache.
    """
    lines, remote = [], []
    for req in reqs:
        state = availability(req, hub_up=False)
        if state.state != "missing":
            continue
        entry = f"{req.stage}.{req.role}: {req.ref} ({state.detail}; `{state.fix}`)"
        (remote if req.kind == "model" and is_hf_ref(req.ref) else lines).append(entry)
    if remote and not hub_reachable():
        lines += remote
    return lines


def missing_models(refs: list[tuple[str, str, str]]) -> list[str]:
    """For ``(stage, role, ref)`` model triples, one line per model that cannot be had right now."""
    return missing_requirements([Requirement(stage, role, ref) for stage, role, ref in refs])
