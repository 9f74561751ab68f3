"""The one place that knows the official RAM++ checkpoint's key names and how they map to ours.

The official ``ram_plus_swin_large_14m.pth`` holds ``{"model": state_dict}`` with names from the
authors' Swin (``visual_encoder.*``, fused ``attn.qkv``) and BERT-style head (``tagging_head.*``).
The official loader also renames a ``vision_multi.*`` prefix (an older name of the head) to
``tagging_head.*``; so do we.
It also stores two buffers that are pure functions of the geometry (``relative_position_index`` and
the shifted-window ``attn_mask``); we check their shapes and drop them, since our backbone derives
its own. Everything else must match one to one: a missing, unexpected or mis-shaped key is an error
that names the key.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from groundedit.models.perception.ram_plus import RamPlus, RamPlusConfig

_HEAD_PARTS = {
    "crossattention.self.query": "q_proj",
    "crossattention.self.key": "k_proj",
    "crossattention.self.value": "v_proj",
    "crossattention.output.dense": "out_proj",
    "crossattention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_SHARED = ("image_proj.weight", "image_proj.bias", "label_embed", "reweight_scale")
_SHARED += ("wordvec_proj.weight", "wordvec_proj.bias", "fc.weight", "fc.bias")
# transformers renamed Swin's attention modules in v5; either layout is accepted, picked by what the
# installed SwinModel actually has.
_SWIN_LAYOUTS = (
    {
        "q": "attention.q_proj",
        "k": "attention.k_proj",
        "v": "attention.v_proj",
        "o": "attention.o_proj",
        "table": "attention.relative_position_bias.relative_position_bias_table",
        "fc1": "mlp.fc1",
        "fc2": "mlp.fc2",
    },
    {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "table": "attention.self.relative_position_bias_table",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
    },
)


class RamPlusCheckpointError(ValueError):
    """The checkpoint does not match the model: lists every missing, unexpected and mis-shaped key."""


def stage_geometry(config: RamPlusConfig) -> list[tuple[int, int]]:
    """(token-grid side, shift size of odd blocks) per Swin stage, as the official Swin computes them."""
    side = config.image_size // config.patch_size
    geometry = []
    for stage in range(len(config.depths)):
        res = side // 2**stage
        if res % config.window_size:
            # Both the official Swin and ours would pad or shrink windows here; no released model does.
            raise ValueError(f"stage {stage} grid {res} is not a multiple of window {config.window_size}")
        geometry.append((res, 0 if res <= config.window_size else config.window_size // 2))
    return geometry


def key_map(config: RamPlusConfig, model_keys: set[str]) -> dict[str, tuple[str, ...]]:
    """Official key -> our key(s). Three of ours mean the official tensor is a fused q|k|v stack."""
    swin = next(
        (
            lay
            for lay in _SWIN_LAYOUTS
            if f"backbone.encoder.layers.0.blocks.0.{lay['q']}.weight" in model_keys
        ),
        None,
    )
    if swin is None:
        raise RamPlusCheckpointError("installed transformers SwinModel has an unknown parameter layout")
    mapping: dict[str, tuple[str, ...]] = {name: (name,) for name in _SHARED}
    wb = ("weight", "bias")
    for p in wb:
        mapping[f"visual_encoder.patch_embed.proj.{p}"] = (
            f"backbone.embeddings.patch_embeddings.projection.{p}",
        )
        mapping[f"visual_encoder.patch_embed.norm.{p}"] = (f"backbone.embeddings.norm.{p}",)
        mapping[f"visual_encoder.norm.{p}"] = (f"backbone.layernorm.{p}",)
    for i, depth in enumerate(config.depths):
        for j in range(depth):
            off, ours = f"visual_encoder.layers.{i}.blocks.{j}.", f"backbone.encoder.layers.{i}.blocks.{j}."
            mapping[off + "attn.relative_position_bias_table"] = (ours + swin["table"],)
            for p in wb:
                mapping[f"{off}attn.qkv.{p}"] = tuple(f"{ours}{swin[r]}.{p}" for r in "qkv")
                mapping[f"{off}attn.proj.{p}"] = (f"{ours}{swin['o']}.{p}",)
                mapping[f"{off}norm1.{p}"] = (f"{ours}layernorm_before.{p}",)
                mapping[f"{off}norm2.{p}"] = (f"{ours}layernorm_after.{p}",)
                mapping[f"{off}mlp.fc1.{p}"] = (f"{ours}{swin['fc1']}.{p}",)
                mapping[f"{off}mlp.fc2.{p}"] = (f"{ours}{swin['fc2']}.{p}",)
        if i < len(config.depths) - 1:
            off, ours = f"visual_encoder.layers.{i}.downsample.", f"backbone.encoder.layers.{i}.downsample."
            mapping[off + "reduction.weight"] = (ours + "reduction.weight",)
            for p in wb:
                mapping[f"{off}norm.{p}"] = (f"{ours}norm.{p}",)
    for layer in range(config.head_layers):
        for official, ours in _HEAD_PARTS.items():
            for p in wb:
                mapping[f"tagging_head.encoder.layer.{layer}.{official}.{p}"] = (f"head.{layer}.{ours}.{p}",)
    return mapping


def derived_buffer_shapes(config: RamPlusConfig) -> dict[str, tuple[int, ...]]:
    """Official geometry buffers (not learned) and their shapes: accepted if present, never required."""
    area = config.window_size**2
    shapes = {}
    for i, ((res, shift), depth) in enumerate(zip(stage_geometry(config), config.depths, strict=True)):
        for j in range(depth):
            off = f"visual_encoder.layers.{i}.blocks.{j}."
            shapes[off + "attn.relative_position_index"] = (area, area)
            if shift and j % 2:
                shapes[off + "attn_mask"] = ((res // config.window_size) ** 2, area, area)
    return shapes


def official_to_ours(official: dict[str, torch.Tensor], model: RamPlus) -> dict[str, torch.Tensor]:
    """Map an official-layout state dict onto ``model``'s names, checking every key and shape."""
    official = _rename_aliases(official)
    ours_sd = model.state_dict()
    mapping = key_map(model.config, set(ours_sd))
    derived = derived_buffer_shapes(model.config)
    missing = sorted(set(mapping) - set(official))
    unexpected = sorted(set(official) - set(mapping) - set(derived))
    misshaped = []
    out: dict[str, torch.Tensor] = {}
    for key, tensor in official.items():
        if key in derived:
            if tuple(tensor.shape) != derived[key]:
                misshaped.append(f"{key}: got {tuple(tensor.shape)}, expected {derived[key]}")
            continue
        if key not in mapping:
            continue
        targets = mapping[key]
        parts = [ours_sd[t].shape for t in targets]
        expected = (sum(s[0] for s in parts), *parts[0][1:]) if len(parts) > 1 else tuple(parts[0])
        if tuple(tensor.shape) != tuple(expected):
            misshaped.append(f"{key}: got {tuple(tensor.shape)}, expected {tuple(expected)}")
            continue
        pieces = tensor.split([s[0] for s in parts]) if len(parts) > 1 else (tensor,)
        out.update(zip(targets, pieces, strict=True))
    if missing or unexpected or misshaped:
        lines = [f"RAM++ checkpoint does not match the model ({model.config.num_tags} tags):"]
        lines += [f"  missing key: {k}" for k in missing]
        lines += [f"  unexpected key: {k}" for k in unexpected]
        lines += [f"  wrong shape: {m}" for m in misshaped]
        raise RamPlusCheckpointError("\n".join(lines))
    return out


def ours_to_official(model: RamPlus) -> dict[str, torch.Tensor]:
    """Our weights under official names, with the official geometry buffers (used to write tiny ``.pth``)."""
    ours_sd = model.state_dict()
    out = {
        official: torch.cat([ours_sd[t] for t in targets]) if len(targets) > 1 else ours_sd[targets[0]]
        for official, targets in key_map(model.config, set(ours_sd)).items()
    }
    window = model.config.window_size
    for key, shape in derived_buffer_shapes(model.config).items():
        if key.endswith("relative_position_index"):
            out[key] = _relative_position_index(window)
        else:
            stage = int(key.split(".")[2])
            res, shift = stage_geometry(model.config)[stage]
            out[key] = _shift_mask(res, window, shift)
            assert tuple(out[key].shape) == shape
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official RAM++ ``.pth`` (no unpickling of code: ``weights_only=True``)."""
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = obj["model"] if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict):
        raise RamPlusCheckpointError(f"{path}: expected a state dict or {{'model': state dict}}")
    return _rename_aliases(state)


def config_from_state(shapes: dict[str, tuple[int, ...]], num_tags: int) -> RamPlusConfig:
    """The sizes of the model an official-layout state dict holds, read from its tensor shapes.

    The released checkpoint carries no config file, so this is how a ``.pth`` alone is loaded.
    Not in the shapes, so kept at the released values: the head's attention heads (4), image mean and
    std, and the input size when no shifted-window mask is stored (384).
    """
    shapes = {k: tuple(v) for k, v in shapes.items()}
    try:
        embed_dim, _, patch, _ = shapes["visual_encoder.patch_embed.proj.weight"]
        stages = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("visual_encoder.layers.")})
        depths, heads = [], []
        for i in stages:
            blocks = {
                int(k.split(".")[4]) for k in shapes if k.startswith(f"visual_encoder.layers.{i}.blocks.")
            }
            depths.append(len(blocks))
            table = shapes[f"visual_encoder.layers.{i}.blocks.0.attn.relative_position_bias_table"]
            heads.append(table[1])
        window = (math.isqrt(table[0]) + 1) // 2
        image_size = RamPlusConfig.image_size
        mask = shapes.get("visual_encoder.layers.0.blocks.1.attn_mask")
        if mask is not None:
            image_size = math.isqrt(mask[0]) * window * patch
        rows, text_width = shapes["label_embed"]
        head_hidden = shapes["wordvec_proj.weight"][0]
        layers = {int(k.split(".")[3]) for k in shapes if k.startswith("tagging_head.encoder.layer.")}
        ffn = shapes["tagging_head.encoder.layer.0.intermediate.dense.weight"][0]
    except (KeyError, ValueError, IndexError) as exc:
        raise RamPlusCheckpointError(f"not an official-layout RAM++ state dict (missing {exc})") from exc
    if rows % num_tags:
        raise RamPlusCheckpointError(
            f"label_embed has {rows} rows, not a multiple of the tag list's {num_tags} tags: "
            "the tag list does not belong to this checkpoint"
        )
    return RamPlusConfig(
        num_tags=num_tags,
        image_size=image_size,
        patch_size=patch,
        embed_dim=embed_dim,
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=window,
        descriptions_per_tag=rows // num_tags,
        text_width=text_width,
        head_hidden=head_hidden,
        head_layers=len(layers),
        head_ffn=ffn,
    )


def load_official_checkpoint(path: str | Path, model: RamPlus) -> None:
    """Load an official RAM++ ``.pth`` into ``model``."""
    load_official_state(read_official_state(path), model)


def load_official_state(state: dict[str, torch.Tensor], model: RamPlus) -> None:
    """Load an official-layout state dict (see :func:`read_official_state`) into ``model``."""
    mapped = official_to_ours(state, model)
    result = model.load_state_dict(mapped, strict=False)
    # Only geometry buffers that older Swin versions persist may be left for the model to derive itself.
    left = [k for k in result.missing_keys if not k.endswith("relative_position_index")]
    if left or result.unexpected_keys:
        raise RamPlusCheckpointError(f"internal key map is incomplete: {left + result.unexpected_keys}")


def _rename_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = "tagging_head." + key[len("vision_multi.") :] if key.startswith("vision_multi.") else key
        if new in renamed:
            raise RamPlusCheckpointError(f"checkpoint holds both {key} and its alias {new}")
        renamed[new] = value
    return renamed


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _shift_mask(res: int, window: int, shift: int) -> torch.Tensor:
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    regions = torch.zeros(res, res)
    for n, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
        regions[rows, cols] = n
    windows = (
        regions.view(res // window, window, res // window, window).permute(0, 2, 1, 3).reshape(-1, window**2)
    )
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)
