"""Training checkpoints (atomic, exact round trip) and the official-layout inference checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from groundedit.models.bagel import BagelEditor, save_bagel, write_tiny_bagel
from groundedit.models.bagel.loading import CheckpointError, TensorFileWriter
from groundedit.train.checkpoint import (
    INTERCOG_FILE,
    CheckpointManager,
    TrainedModules,
    export_inference,
    latest_checkpoint,
)
from groundedit.train.parallel import World


def keys(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def test_inference_checkpoint_has_the_official_keys_and_loads_strictly(components, tmp_path):
    official = write_tiny_bagel(tmp_path / "official", seed=0)
    out = export_inference(
        tmp_path / "run", components.bagel.model, components.bagel.folder, components.prompts
    )
    assert out == tmp_path / "run" / "model"
    assert keys(out / "ema.safetensors") == keys(official / "ema.safetensors")
    assert (out / "ae.safetensors").read_bytes() == (components.bagel.folder / "ae.safetensors").read_bytes()
    for name in ("llm_config.json", "vit_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / INTERCOG_FILE).read_text()) == components.prompts
    editor = BagelEditor.from_pretrained(out, device="cpu", dtype=torch.float32)
    for name, p in editor.model.state_dict().items():
        assert torch.equal(p, components.bagel.model.state_dict()[name]), name
    # replacing an existing export leaves no temporary folders
    export_inference(tmp_path / "run", components.bagel.model, components.bagel.folder, {})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model"]


def test_export_writes_the_initial_files_dtype(components, tmp_path):
    """The official ema.safetensors is bf16: the export follows the initial file's dtype, not fp32."""
    model = components.bagel.model
    init = save_bagel(tmp_path / "bf16", model, components.bagel.vae, dtype=torch.bfloat16)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(components.bagel.folder / name, init / name)
    out = export_inference(tmp_path / "run", model, init, {})
    with safe_open(str(out / "ema.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118
        for name, p in model.state_dict().items():
            assert torch.equal(f.get_tensor(name), p.to(torch.bfloat16)), name


def test_streamed_file_refuses_a_tensor_out_of_order_or_missing(tmp_path):
    entries = [("a", (2, 3), torch.float32), ("b", (4,), torch.bfloat16)]
    writer = TensorFileWriter(tmp_path / "x.safetensors", entries)
    with pytest.raises(CheckpointError, match=r"expected a \(2, 3\) next, got b"):
        writer.write("b", torch.zeros(4))
    writer.write("a", torch.arange(6.0).reshape(2, 3))
    with pytest.raises(CheckpointError, match="1 tensors never written, first b"):
        writer.close()
    writer = TensorFileWriter(tmp_path / "y.safetensors", entries)
    writer.write("a", torch.arange(6.0).reshape(2, 3))
    writer.write("b", torch.tensor([1.5, 2.0, -3.0, 0.25], dtype=torch.float64))
    writer.close()
    with safe_open(str(tmp_path / "y.safetensors"), framework="pt") as f:
        assert torch.equal(f.get_tensor("a"), torch.arange(6.0).reshape(2, 3))
        assert f.get_tensor("b").dtype == torch.bfloat16
        assert f.get_tensor("b").tolist() == [1.5, 2.0, -3.0, 0.25]


def test_training_checkpoint_round_trip(components, tmp_path):
    model, heads = components.bagel.model, components.heads
    initial = {k: v.clone() for k, v in heads.state_dict().items()}
    params = [p for p in heads.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-15)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    meta = {"data_args": ["x"]}
    manager = CheckpointManager(tmp_path, World(), TrainedModules(model, heads), optimizer, every=2, keep=2)
    assert [s for s in range(1, 7) if manager.due(s, last=s == 5)] == [2, 4, 5, 6]
    for step in (2, 4, 6):
        manager.save(step, meta, {"draws": step})
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000004", "step-0000006"]
    assert latest_checkpoint(tmp_path) == manager.latest() == root / "step-0000006"
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    state = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    fresh = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-15)
    restored = CheckpointManager(tmp_path, World(), TrainedModules(model, heads), fresh, every=2, keep=2)
    got, data = restored.restore(root / "step-0000006")
    assert got["step"] == 6 and got["data_args"] == ["x"] and data == {"draws": 6}
    for k, v in heads.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in fresh.state_dict()["state"][0].items():
        assert torch.equal(v, state[k]), k
    ema = torch.optim.swa_utils.AveragedModel(heads)
    with pytest.raises(FileNotFoundError, match="ema"):
        CheckpointManager(
            tmp_path, World(), TrainedModules(model, heads), fresh, ema, every=2, keep=2
        ).restore(root / "step-0000006")
    heads.load_state_dict(initial)  # the components are shared by other tests
