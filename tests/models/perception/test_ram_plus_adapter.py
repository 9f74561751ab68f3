"""The official RAM++ checkpoint layout loads strictly; every mismatch names its key."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from groundedit.models.perception.ram_plus import RamPlus
from groundedit.models.perception.ram_plus_adapter import (
    RamPlusCheckpointError,
    load_official_checkpoint,
    official_to_ours,
    ours_to_official,
)
from groundedit.models.perception.tiny import build_ram_plus


@pytest.fixture(scope="module")
def source() -> RamPlus:
    return build_ram_plus("tiny", num_tags=4, seed=1)


@pytest.fixture(scope="module")
def official(source) -> dict[str, torch.Tensor]:
    return ours_to_official(source)


def _fresh(source) -> RamPlus:
    return RamPlus(source.config)


def test_official_layout_has_the_official_names(official):
    assert "visual_encoder.layers.0.blocks.0.attn.qkv.weight" in official
    assert "visual_encoder.layers.0.blocks.1.attn_mask" in official  # shifted block
    assert "visual_encoder.layers.3.blocks.1.attn_mask" not in official  # 12x12 grid, window 12: no shift
    assert "tagging_head.encoder.layer.1.crossattention.self.query.weight" in official
    assert official["label_embed"].shape == (4 * 3, 16)
    assert not any(k.startswith(("backbone.", "head.")) for k in official)


def test_checkpoint_file_loads_strictly_and_round_trips(tmp_path, source, official):
    path = tmp_path / "ram_plus.pth"
    torch.save({"model": official}, path)
    model = _fresh(source)
    load_official_checkpoint(path, model)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_a_flat_state_dict_and_the_vision_multi_alias_load(tmp_path, source, official):
    renamed = {k.replace("tagging_head.", "vision_multi.", 1): v for k, v in official.items()}
    path = tmp_path / "flat.pth"
    torch.save(renamed, path)
    load_official_checkpoint(path, _fresh(source))


def test_missing_key_is_named(source, official):
    broken = dict(official)
    del broken["visual_encoder.layers.2.blocks.1.mlp.fc2.bias"]
    with pytest.raises(
        RamPlusCheckpointError, match=r"missing key: visual_encoder\.layers\.2\.blocks\.1\.mlp\.fc2\.bias"
    ):
        official_to_ours(broken, _fresh(source))


def test_unexpected_key_is_named(source, official):
    broken = dict(
        official, **{"tagging_head.encoder.layer.0.attention.self.query.weight": torch.zeros(32, 32)}
    )
    with pytest.raises(
        RamPlusCheckpointError, match=r"unexpected key: tagging_head\.encoder\.layer\.0\.attention"
    ):
        official_to_ours(broken, _fresh(source))


@pytest.mark.parametrize(
    "key",
    [
        "visual_encoder.layers.1.blocks.0.attn.qkv.weight",
        "label_embed",
        "visual_encoder.layers.0.blocks.1.attn_mask",
    ],
)
def test_wrong_shape_is_named(source, official, key):
    broken = dict(official)
    broken[key] = torch.zeros(*official[key].shape[:-1], official[key].shape[-1] + 1)
    with pytest.raises(RamPlusCheckpointError, match="wrong shape: " + re.escape(key) + ": got"):
        official_to_ours(broken, _fresh(source))


def test_tag_count_mismatch_fails_loudly(official):
    other = build_ram_plus("tiny", num_tags=5, seed=1)
    with pytest.raises(RamPlusCheckpointError, match="wrong shape: label_embed"):
        official_to_ours(official, other)


class _NotATensor:
    """Any pickled object other than tensors and plain containers must be refused."""


def test_loading_never_unpickles_objects(tmp_path, source, official):
    path = tmp_path / "evil.pth"
    torch.save({"model": official, "extra": _NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_official_checkpoint(path, _fresh(source))


def test_the_released_sizes_are_read_back_from_a_released_layout_state_dict():
    """Shapes of a full-size Swin-L RAM++ (built on the meta device, nothing allocated) give back
    exactly the released configuration: the .pth alone is enough to load."""
    import torch

    from groundedit.models.perception.ram_plus import RamPlus, RamPlusConfig
    from groundedit.models.perception.ram_plus_adapter import config_from_state, ours_to_official

    with torch.device("meta"):
        full = RamPlus(RamPlusConfig())
    shapes = {k: tuple(v.shape) for k, v in ours_to_official(full).items()}
    assert config_from_state(shapes, 4585) == RamPlusConfig()
