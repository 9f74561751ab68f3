"""Data-parallel training on CPU (torchrun, gloo, FSDP2): two processes give one process's losses, weights and
EMA, with one gradient reduction per step over two packs per rank, and a two-process run killed after a
checkpoint resumes where it stopped."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from groundedit.cli import main
from groundedit.train.logbook import read_metrics
from groundedit.train.objective import MASK_PARTS, TERMS

from ..conftest import copy_stages
from .conftest import sample_members, write_shard

pytestmark = pytest.mark.slow

STEPS = 3
# The tiny profile with 4 samples a step, each its own pack (2 packs per rank: these samples are 367 tokens
# long with nothing dropped, so a 400-token budget holds exactly one), gradients reduced once per step, and
# an EMA (decay 0.5: every step moves it visibly).
EDITS = {
    "train": (
        "    max_steps: 4\n    batch_size: 2\n    max_tokens_per_pack: 4096\n    max_tokens_per_sample: 4096\n",
        "    max_steps: 4\n    batch_size: 4\n    max_tokens_per_pack: 400\n    max_tokens_per_sample: 400\n",
    )
}
OPTIM = (
    "    optim: {lr: 1.0e-3, warmup_steps: 2}",
    "    optim: {lr: 1.0e-3, warmup_steps: 2, ema_decay: 0.5}",
)
RUNTIME = ("fsdp_bf16: false,", "fsdp_bf16: false, gradient_sync: step,")
# No ViT dropout: a parameter no sample of a step used gets a zero gradient under FSDP2 and none in one
# process (AdamW then moves it on momentum in one run only: ARCHITECTURE.md), which would make the weights
# differ for that reason alone. Text and VAE dropout stay.
DROPOUT = ("cfg_dropout: {text: 0.1, vit: 0.3, vae: 0.3}", "cfg_dropout: {text: 0.1, vit: 0.0, vae: 0.3}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Eight samples in one shard: with one source and no bad samples, two ranks striping the stream
    draw exactly the samples one process draws, step by step."""
    d = tmp_path_factory.mktemp("dist-data")
    write_shard(d / "shards" / "a.tar", {f"s{i}": sample_members(f"s{i}", seed=i) for i in range(8)})
    stages = copy_stages(d / "stages", edits=EDITS)
    text = (stages / "train.yaml").read_text()
    for old, new in (OPTIM, RUNTIME, DROPOUT):
        assert old in text, old
        text = text.replace(old, new)
    (stages / "train.yaml").write_text(text)
    return d


def sharded_state(checkpoint, tmp_path) -> dict:
    """A distributed checkpoint's tensors, read without a process group."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(checkpoint / "dcp", tmp_path / "state.pt")
    return torch.load(tmp_path / "state.pt", weights_only=False)


def test_two_processes_repeat_one_and_resume_after_a_kill(data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(data / "stages"))
    args = ["train", "--data", str(data / "shards"), "--profile", "tiny", "--max-steps", str(STEPS)]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0

    two = [*args, "--out", str(tmp_path / "two"), "--nproc-per-node", "2"]
    crashed = cli(*two, env={"GROUNDEDIT_CRASH_AT": "train:checkpoint-written@1"}, check=False)
    assert crashed.returncode not in (0, -signal.SIGKILL), crashed.stderr[-2000:]  # torchrun reports it
    assert [r["step"] for r in read_metrics(tmp_path / "two")] == [1, 2]
    meta = json.loads((tmp_path / "two" / "checkpoints" / "step-0000002" / "meta.json").read_text())
    assert meta["world_size"] == 2 and len(meta["ranks"]) == 2

    cli(*two, "--resume")
    one, two_rows = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two_rows] == list(range(1, STEPS + 1))
    for a, b in zip(one, two_rows, strict=True):
        assert (
            a["samples"] == b["samples"] == 4 and a["packs"] == b["packs"] == 4 and a["tokens"] == b["tokens"]
        )
        for term in ("loss", *TERMS, *MASK_PARTS):
            assert abs(a[term] - b[term]) < 1e-5, (a["step"], term, a[term], b[term])

    # The weights and the EMA after the last step: one process's safetensors, two processes' shards.
    last = f"checkpoints/step-{STEPS:07d}"
    weights = load_file(str(tmp_path / "one" / last / "bagel.safetensors"))
    ema = load_file(str(tmp_path / "one" / last / "ema.safetensors"))
    sharded = sharded_state(tmp_path / "two" / last, tmp_path)
    assert sharded["ema"].keys() == ema.keys() and len(ema) == len(weights) - 2  # all but the fixed tables
    for name, value in weights.items():
        if name.startswith("vit_model.") and name.endswith("k_proj.bias"):
            # Softmax ignores a bias shared by all keys: its gradient is rounding noise, which AdamW
            # (eps 1e-15) turns into steps of either sign; it differs between any two runs.
            continue
        torch.testing.assert_close(sharded["model"][f"bagel.{name}"], value, atol=1e-4, rtol=0, msg=name)
    for name, value in ema.items():
        if name.startswith("vit_model.") and name.endswith("k_proj.bias"):
            continue
        torch.testing.assert_close(sharded["ema"][name], value, atol=1e-4, rtol=0)
        assert not torch.equal(value, weights[name]), f"{name}: the EMA lags the weights"
    # model/ holds the EMA, gathered tensor by tensor from the shards
    exported = load_file(str(tmp_path / "two" / "model" / "ema.safetensors"))
    for name, value in ema.items():
        if not (name.startswith("vit_model.") and name.endswith("k_proj.bias")):
            torch.testing.assert_close(exported[name], value, atol=1e-4, rtol=0, msg=name)
    assert not list((tmp_path / "two").rglob(".*tmp-*")), "no temporary files left behind"
