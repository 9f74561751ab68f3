"""Loading in the official layout: strict keys, clear errors, meta init, deterministic tiny folders."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from groundedit.models.bagel import Bagel, BagelConfig, CheckpointError, FluxVAE, load_bagel, write_tiny_bagel
from groundedit.models.bagel.loading import check_keys, resolve_folder, tensor_shapes

OFFICIAL_KEYS = [
    "language_model.model.embed_tokens.weight",
    "language_model.model.layers.0.self_attn.q_proj.bias",
    "language_model.model.layers.0.self_attn.q_proj_moe_gen.weight",
    "language_model.model.layers.0.self_attn.k_norm_moe_gen.weight",
    "language_model.model.layers.0.mlp_moe_gen.gate_proj.weight",
    "language_model.model.layers.0.input_layernorm_moe_gen.weight",
    "language_model.model.layers.0.post_attention_layernorm.weight",
    "language_model.model.norm_moe_gen.weight",
    "language_model.lm_head.weight",
    "vit_model.vision_model.embeddings.patch_embedding.weight",
    "vit_model.vision_model.embeddings.position_embedding.weight",
    "vit_model.vision_model.encoder.layers.0.self_attn.out_proj.weight",
    "vit_model.vision_model.post_layernorm.bias",
    "connector.fc1.weight",
    "connector.fc2.bias",
    "vae2llm.weight",
    "llm2vae.bias",
    "time_embedder.mlp.0.weight",
    "time_embedder.mlp.2.weight",
    "latent_pos_embed.pos_embed",
    "vit_pos_embed.pos_embed",
]


def test_tiny_folder_has_official_layout_and_loads_strictly(tiny_dir, tiny):
    for name in ("llm_config.json", "vit_config.json", "ema.safetensors", "ae.safetensors", "tokenizer.json"):
        assert (tiny_dir / name).is_file()
    keys = tensor_shapes(tiny_dir / "ema.safetensors")
    assert set(OFFICIAL_KEYS) <= keys.keys()
    assert keys.keys() == tiny.model.state_dict().keys()
    assert "encoder.down.0.block.0.conv1.weight" in tensor_shapes(tiny_dir / "ae.safetensors")
    params = [*tiny.model.parameters(), *tiny.vae.parameters()]
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    assert not tiny.model.latent_pos_embed.pos_embed.requires_grad


def test_real_size_layout_matches_the_official_numbers():
    with torch.device("meta"):
        model, vae = Bagel(BagelConfig()), FluxVAE(BagelConfig().vae)
    sd = model.state_dict()
    assert sd["language_model.model.embed_tokens.weight"].shape == (152064, 3584)
    assert sd["language_model.model.layers.27.mlp_moe_gen.down_proj.weight"].shape == (3584, 18944)
    assert sd["language_model.model.layers.0.self_attn.k_proj.weight"].shape == (512, 3584)
    assert "vit_model.vision_model.encoder.layers.25.mlp.fc2.weight" in sd  # 26 of the 27 SigLIP layers
    assert "vit_model.vision_model.encoder.layers.26.mlp.fc2.weight" not in sd
    assert sd["vit_model.vision_model.embeddings.patch_embedding.weight"].shape == (1152, 588)
    assert sd["latent_pos_embed.pos_embed"].shape == (64 * 64, 3584)
    assert sd["vit_pos_embed.pos_embed"].shape == (70 * 70, 3584)
    total = sum(p.numel() for p in model.parameters())
    assert 14.0e9 < total < 15.0e9
    assert sum(p.numel() for p in vae.parameters()) == pytest.approx(83.8e6, rel=0.01)


def _broken_copy(tiny_dir, tmp_path, edit):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_dir, folder)
    state = load_file(folder / "ema.safetensors")
    edit(state)
    save_file(state, folder / "ema.safetensors")
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("language_model.model.layers.1.self_attn.q_proj_moe_gen.bias"), "missing keys"),
        (lambda sd: sd.__setitem__("vit_model.extra.weight", torch.zeros(2)), "unexpected keys"),
        (
            lambda sd: sd.__setitem__("connector.fc1.weight", torch.zeros(3, 3)),
            "mis-shaped keys",
        ),
    ],
)
def test_bad_checkpoints_fail_naming_the_key(tiny_dir, tmp_path, edit, message):
    folder = _broken_copy(tiny_dir, tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_bagel(folder, device="cpu")
    text = str(err.value)
    assert message in text
    key = {
        "missing keys": "language_model.model.layers.1.self_attn.q_proj_moe_gen.bias",
        "unexpected keys": "vit_model.extra.weight",
        "mis-shaped keys": "connector.fc1.weight: checkpoint (3, 3) vs model (64, 32)",
    }[message]
    assert key in text


def test_check_keys_reports_all_problems_at_once(tiny):
    found = {k: tuple(v.shape) for k, v in tiny.model.state_dict().items()}
    found.pop("llm2vae.weight")
    found["bogus"] = (1,)
    found["vae2llm.bias"] = (7,)
    with pytest.raises(CheckpointError) as err:
        check_keys(tiny.model, found, tiny.folder / "ema.safetensors")
    assert all(s in str(err.value) for s in ("llm2vae.weight", "bogus", "vae2llm.bias"))


def test_missing_files_and_unreachable_hub_give_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "llm_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"missing vit_config\.json"):
        resolve_folder(tmp_path)
    with pytest.raises(CheckpointError, match="neither a Bagel folder"):
        resolve_folder(tmp_path / "nope" / "deeper" / "path")

    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match=r"could not fetch 'ByteDance-Seed/BAGEL-7B-MoT'.*tiny profile"):
        resolve_folder("ByteDance-Seed/BAGEL-7B-MoT")


def test_write_tiny_bagel_is_deterministic(tiny_dir, tmp_path):
    again = write_tiny_bagel(tmp_path / "again", seed=0)
    for name in ("ema.safetensors", "ae.safetensors", "llm_config.json", "vit_config.json", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes()
    other = write_tiny_bagel(tmp_path / "other", seed=1)
    assert (other / "ema.safetensors").read_bytes() != (tiny_dir / "ema.safetensors").read_bytes()


def test_vit_position_table_must_match_the_official_70_patches(tiny_dir, tmp_path):
    """A folder without our extra config is the official release, whose code hard-codes 70 patches per
    side for vit_pos_embed; a vit_config.json that implies another size is refused, naming the fix."""
    import json

    from groundedit.models.bagel.config import BagelConfig, VAEConfig

    vit = {"hidden_size": 1152, "patch_size": 14, "image_size": 980}
    assert BagelConfig.from_parts({}, vit, VAEConfig()).vit.max_patches_per_side == 70
    assert BagelConfig.from_parts({}, {**vit, "image_size": 384}, VAEConfig(), {}).vit.image_size == 384
    with pytest.raises(ValueError, match=r"image_size 384 / patch_size 14 gives 27 .* set image_size to 980"):
        BagelConfig.from_parts({}, {**vit, "image_size": 384}, VAEConfig())

    folder = tmp_path / "tiny"
    shutil.copytree(tiny_dir, folder)
    extra = json.loads((folder / "groundedit_bagel.json").read_text())
    assert extra["vit_max_patches_per_side"] == 16  # the tiny ViT's own size, declared beside it
    (folder / "groundedit_bagel.json").write_text(json.dumps({**extra, "vit_max_patches_per_side": 70}))
    with pytest.raises(ValueError, match="gives 16 ViT patches per side, but the checkpoint's vit_pos_embed"):
        load_bagel(folder, device="cpu")
