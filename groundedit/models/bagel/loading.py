"""Loading and saving Bagel in the official folder layout.

A folder holds ``llm_config.json``, ``vit_config.json``, ``ema.safetensors`` (all of :class:`Bagel`),
``ae.safetensors`` (the FLUX VAE), the tokenizer files and optionally ``groundedit_bagel.json``. Modules are
built on the meta device and the tensors are read straight to the target device and dtype, so the weights
exist once. Keys are matched strictly; any missing, unexpected or mis-shaped key fails with its name.
Only safetensors are read (nothing is unpickled).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import EXTRA_CONFIG_FILE, BagelConfig, VAEConfig
from .model import Bagel
from .packing import SpecialTokens
from .vae import FluxVAE

REQUIRED_FILES = ("llm_config.json", "vit_config.json", "ema.safetensors", "ae.safetensors")
HUB_PATTERNS = [*REQUIRED_FILES, EXTRA_CONFIG_FILE, "*.json", "*.txt", "tokenizer*"]


class CheckpointError(RuntimeError):
    """A checkpoint does not match the model it is loaded into, or cannot be found."""


@dataclass
class LoadedBagel:
    """Everything an edit or a training run needs."""

    model: Bagel
    vae: FluxVAE
    tokenizer: object
    tokens: SpecialTokens
    config: BagelConfig
    folder: Path


def resolve_folder(path_or_id: str | Path) -> Path:
    """A local folder as is; anything else is treated as a Hugging Face repo id and downloaded."""
    path = Path(path_or_id)
    if path.is_dir():
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise CheckpointError(f"{path} is not a Bagel folder: missing {', '.join(missing)}")
        return path
    if path.exists() or str(path_or_id).count("/") != 1:
        raise CheckpointError(f"{path_or_id!r} is neither a Bagel folder nor a Hugging Face repo id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id), allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        raise CheckpointError(
            f"could not fetch {path_or_id!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Download it where the hub is reachable (`hf download {path_or_id} --local-dir DIR`) "
            "and pass DIR, or use the tiny profile."
        ) from exc


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes in a safetensors file, read from its header only."""
    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)


def read_config(folder: Path) -> BagelConfig:
    llm = json.loads((folder / "llm_config.json").read_text())
    vit = json.loads((folder / "vit_config.json").read_text())
    extra_path = folder / EXTRA_CONFIG_FILE
    extra = json.loads(extra_path.read_text()) if extra_path.is_file() else None
    vae = VAEConfig.from_shapes(tensor_shapes(folder / "ae.safetensors"))
    return BagelConfig.from_parts(llm, vit, vae, extra)


def check_keys(module: nn.Module, found: dict[str, tuple[int, ...]], source: Path) -> None:
    """Raise naming every missing, unexpected and mis-shaped key."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = sorted(
        f"{k}: checkpoint {found[k]} vs model {expected[k]}"
        for k in expected.keys() & found.keys()
        if found[k] != expected[k]
    )
    problems = [
        (f"missing keys ({len(missing)})", missing),
        (f"unexpected keys ({len(unexpected)})", unexpected),
        (f"mis-shaped keys ({len(shapes)})", shapes),
    ]
    lines = [
        f"  {title}:\n    " + "\n    ".join(items[:20]) + ("\n    ..." if len(items) > 20 else "")
        for title, items in problems
        if items
    ]
    if lines:
        raise CheckpointError(f"{source} does not match {type(module).__name__}:\n" + "\n".join(lines))


def load_weights(module: nn.Module, path: Path, device: torch.device, dtype: torch.dtype) -> None:
    """Strictly load a safetensors file into a (meta-device) module, tensor by tensor onto ``device``."""
    check_keys(module, tensor_shapes(path), path)
    state = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for key in f.keys():  # noqa: SIM118 (not a dict)
            t = f.get_tensor(key)
            state[key] = t.to(dtype) if t.is_floating_point() else t
    # assign=True adopts the loaded tensors (no copy) but keeps each parameter's requires_grad.
    module.load_state_dict(state, strict=True, assign=True)


def default_device_dtype(
    device: str | torch.device | None, dtype: torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return dev, dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def load_bagel(
    path_or_id: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    model_weights: bool = True,
) -> LoadedBagel:
    """Load model, VAE and tokenizer from a folder in the official layout (or a hub id).

    ``device`` defaults to CUDA when present; ``dtype`` to bfloat16 on CUDA and float32 elsewhere.
    ``model_weights=False`` leaves the Bagel module on the meta device (keys still checked), for a caller
    that shards it first and fills it afterwards.
    """
    from transformers import AutoTokenizer

    folder = resolve_folder(path_or_id)
    dev, dt = default_device_dtype(device, dtype)
    config = read_config(folder)
    with torch.device("meta"):
        model, vae = Bagel(config), FluxVAE(config.vae)
    if model_weights:
        load_weights(model, folder / "ema.safetensors", dev, dt)
    else:
        check_keys(model, tensor_shapes(folder / "ema.safetensors"), folder / "ema.safetensors")
    load_weights(vae, folder / "ae.safetensors", dev, dt)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if len(tokenizer) > config.llm.vocab_size:
        raise CheckpointError(
            f"tokenizer has {len(tokenizer)} tokens, the model only {config.llm.vocab_size}"
        )
    return LoadedBagel(
        model.eval(), vae.eval(), tokenizer, SpecialTokens.from_tokenizer(tokenizer), config, folder
    )


# safetensors' names of the dtypes a Bagel checkpoint holds.
_DTYPES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def file_dtype(path: Path) -> torch.dtype:
    """The dtype of the floating tensors of a safetensors file (the official ``ema.safetensors``: bf16)."""
    names = {v: k for k, v in _DTYPES.items()}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (not a dict)
            dtype = names.get(f.get_slice(key).get_dtype())
            if dtype is not None and dtype.is_floating_point:
                return dtype
    raise CheckpointError(f"{path} holds no floating-point tensor")


class TensorFileWriter:
    """A safetensors file written one tensor at a time, so no more than one tensor is ever in memory.

    The header (every name, dtype, shape and byte range) is written first, from ``entries``; the tensors
    must then arrive in that order. Hand-written because ``safetensors.torch.save_file`` takes a dict of
    every tensor (and copies each into bytes): for a 14B-parameter model that is a second model in host
    memory. The file is a normal safetensors file (8-byte header length, JSON header padded to 8 bytes,
    then the data), read by ``safe_open`` and the official loaders alike.
    """

    def __init__(self, path: Path, entries: list[tuple[str, tuple[int, ...], torch.dtype]]) -> None:
        self.entries, self.done = entries, 0
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, dtype in entries:
            size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {
                "dtype": _DTYPES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(struct.pack("<Q", len(text)) + text)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """The next tensor (cast to its entry's dtype, moved to the CPU)."""
        want, shape, dtype = self.entries[self.done]
        if name != want or tuple(tensor.shape) != shape:
            raise CheckpointError(f"expected {want} {shape} next, got {name} {tuple(tensor.shape)}")
        data = tensor.detach().to("cpu", dtype).contiguous().reshape(-1)
        self.file.write(data.view(torch.uint8).numpy())
        self.done += 1

    def close(self) -> None:
        """Close the file; raise if a tensor of the header was never written."""
        self.file.close()
        if self.done != len(self.entries):
            missing = [name for name, _, _ in self.entries[self.done :]]
            raise CheckpointError(f"{len(missing)} tensors never written, first {missing[0]}")


def official_entries(
    config: BagelConfig, dtype: torch.dtype
) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Name, shape and (floating tensors: ``dtype``) dtype of every tensor of ``ema.safetensors``, in the
    model's order (built on the meta device)."""
    with torch.device("meta"):
        state = Bagel(config).state_dict()
    return [(k, tuple(v.shape), dtype if v.is_floating_point() else v.dtype) for k, v in state.items()]


def save_bagel(
    folder: str | Path,
    model: Bagel,
    vae: FluxVAE | None,
    *,
    extra_config: bool = True,
    tensors: Iterable[tuple[str, torch.Tensor]] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write configs and weights in the official layout (tokenizer files are the caller's).

    ``ema.safetensors`` is written one tensor at a time, from ``tensors`` ((name, tensor) pairs in the
    model's order, official names: a gathered, averaged or merged state) or else from the model's own
    state; floating tensors are stored in ``dtype`` (default: the model's). ``ae.safetensors`` is written
    from ``vae`` unless it is None (the caller copies the file it came from).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    (out / "llm_config.json").write_text(json.dumps(cfg.llm.to_json_dict(), indent=2))
    (out / "vit_config.json").write_text(json.dumps(cfg.vit.to_json_dict(), indent=2))
    if extra_config:
        (out / EXTRA_CONFIG_FILE).write_text(json.dumps(cfg.extra_json_dict(), indent=2))
    writer = TensorFileWriter(out / "ema.safetensors", official_entries(cfg, dtype or model.dtype))
    try:
        for name, tensor in tensors if tensors is not None else model.state_dict().items():
            writer.write(name, tensor)
    except BaseException:
        writer.file.close()
        raise
    writer.close()
    if vae is not None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()},
            str(out / "ae.safetensors"),
        )
    return out
