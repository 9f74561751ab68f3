"""Training end to end on shards from a real tiny ``groundedit run``: overfitting, kill -9 + resume, the
exported checkpoint, reasoning edits, and Bagel-format parquet as extra data."""

from __future__ import annotations

import json
import signal
import tarfile

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from groundedit.cli import main
from groundedit.models.bagel import BagelEditor, write_tiny_bagel
from groundedit.train.data import DataMixture
from groundedit.train.errors import TrainError
from groundedit.train.logbook import read_metrics
from groundedit.train.objective import TERMS
from groundedit.train.sequence import build_pack, group_plans
from groundedit.train.spec import load_train_spec
from groundedit.train.trainer import build_components, next_plans, step_losses, train

from .conftest import no_dropout, sample_members, write_shard
from .test_data import write_bagel_parquet

pytestmark = pytest.mark.slow

TIMING = {"seconds", "tokens_per_s"}


def first_sample(run, dest):
    """A one-sample shard holding the first exported sample of a run."""
    shard = sorted((run / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    key = members[0][0].split(".")[0]
    sample = {name.split(".", 1)[1]: data for name, data in members if name.split(".")[0] == key}
    return write_shard(dest, {key: sample})


def eval_losses(spec, shard, weights=None) -> dict[str, float]:
    """Every term on one fixed pack (fixed timesteps and noise), with initial or trained weights."""
    c = build_components(spec)
    if weights is not None:
        c.bagel.model.load_state_dict(load_file(str(weights / "bagel.safetensors")))
        c.heads.load_state_dict(load_file(str(weights / "heads.safetensors")))
    plans = next_plans(DataMixture.from_args([str(shard)]), c, spec)
    packs = [
        build_pack(g, c.bagel.config, c.bagel.tokens) for g in group_plans(plans, spec.max_tokens_per_pack)
    ]
    with torch.no_grad():
        return step_losses(c, packs, spec, "eval", backward=False)[1]


def test_training_overfits_one_sample_and_every_term_falls(tiny_run, tmp_path):
    torch.set_num_threads(1)
    shard = first_sample(tiny_run, tmp_path / "one" / "one.tar")
    steps = 12
    overrides = no_dropout(
        max_steps=steps, batch_size=1, checkpoint_every=steps, optim={"lr": 1e-3, "warmup_steps": 0}
    )
    spec = load_train_spec("tiny", overrides=overrides)
    model_dir = train(spec, [str(shard)], tmp_path / "out")
    before = eval_losses(spec, shard)
    after = eval_losses(spec, shard, tmp_path / "out" / "checkpoints" / f"step-{steps:07d}")
    print({t: (round(before[t], 4), round(after[t], 4)) for t in TERMS})
    for term in TERMS:
        assert after[term] < before[term], (term, before[term], after[term])
    assert after["tv"] < -0.5 and after["vv"] < -0.5  # from about 0 (unrelated) towards -1 (aligned)
    trained = load_file(str(tmp_path / "out" / "checkpoints" / f"step-{steps:07d}" / "bagel.safetensors"))
    exported = load_file(str(model_dir / "ema.safetensors"))
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], v) for k, v in trained.items())
    rows = read_metrics(tmp_path / "out")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(set(TERMS) <= r.keys() and r["samples"] == 1 and r["tokens_per_s"] > 0 for r in rows)


@pytest.fixture(scope="module")
def reference_run(tiny_run, tmp_path_factory):
    """An uninterrupted 4-step tiny run through the CLI, in this process (the tiny profile checkpoints
    every 2 steps and runs on one CPU thread, like the subprocesses below)."""
    out = tmp_path_factory.mktemp("train") / "ref"
    assert (
        main(["train", "--data", str(tiny_run), "--out", str(out), "--profile", "tiny", "--max-steps", "4"])
        == 0
    )
    return out


def test_kill_and_resume_repeats_the_uninterrupted_run(reference_run, tiny_run, tmp_path, cli):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_run), "--out", str(out), "--profile", "tiny", "--max-steps", "4"]
    crashed = cli(*args, env={"GROUNDEDIT_CRASH_AT": "train:checkpoint-written@1"}, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert main([*args, "--resume"]) == 0
    got, want = read_metrics(out), read_metrics(reference_run)
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4]
    for a, b in zip(got, want, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }
    x, y = (
        load_file(str(out / "model" / "ema.safetensors")),
        load_file(str(reference_run / "model" / "ema.safetensors")),
    )
    assert all(torch.equal(x[k], y[k]) for k in y), "bit-identical weights after resume"
    assert not list(out.rglob(".*tmp-*")), "no temporary files left behind"
    assert json.loads((out / "checkpoints" / "step-0000004" / "meta.json").read_text())["step"] == 4


def test_refuses_to_overwrite_a_run(reference_run, tiny_run, capsys):
    assert main(["train", "--data", str(tiny_run), "--out", str(reference_run), "--profile", "tiny"]) == 1
    assert "already holds a training run" in capsys.readouterr().err


def test_checkpoint_is_official_and_edits_with_reasoning(reference_run, tiny_run, tmp_path):
    model_dir = reference_run / "model"
    official = write_tiny_bagel(tmp_path / "official")
    for name in ("ema.safetensors", "ae.safetensors"):
        with safe_open(str(model_dir / name), "pt") as a, safe_open(str(official / name), "pt") as b:
            assert set(a.keys()) == set(b.keys()), name
    BagelEditor.from_pretrained(model_dir, device="cpu")  # strict keys and shapes

    shard = sorted((tiny_run / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        srcs = [m for m in tar.getmembers() if m.name.endswith(".src.jpg")]
        for m in srcs:
            (tmp_path / m.name).write_bytes(tar.extractfile(m).read())
    batch = tmp_path / "edits.jsonl"
    batch.write_text(
        "".join(json.dumps({"image": m.name, "instruction": "make the bench red"}) + "\n" for m in srcs)
    )
    common = ["--steps", "3", "--max-text-tokens", "6"]
    out = tmp_path / "edits"
    assert (
        main(
            [
                "edit",
                "--ckpt",
                str(reference_run),
                "--batch",
                str(batch),
                "--reasoning",
                "--out",
                str(out),
                *common,
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(srcs)
    for row in rows:
        for artifact in ("grounding", "grounded", "description", "edited"):
            assert row[artifact].endswith((".txt", ".png")) and (out / row[artifact].split("/")[-1]).is_file()
    plain = tmp_path / "plain"
    image = tmp_path / srcs[0].name
    assert (
        main(
            [
                "edit",
                "--ckpt",
                str(reference_run / "model"),
                "--image",
                str(image),
                "--instruction",
                "x",
                "--out",
                str(plain),
                *common,
            ]
        )
        == 0
    )
    assert sorted(p.name for p in plain.iterdir()) == ["results.jsonl", f"{image.stem}.edited.png"]


def test_bagel_parquet_mixes_into_training(tiny_run, tmp_path):
    """A parquet file written as Bagel's TRAIN.md describes (image_list / instruction_list + parquet_info),
    built from the run's own photos, trains next to the shards."""
    rows = []
    for shard in sorted((tiny_run / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in members:
            if name.endswith(".src.jpg"):
                key = name.split(".")[0]
                rows.append(
                    ([members[name], members[f"{key}.edited.jpg"]], [["make it look different", "change it"]])
                )
    info = write_bagel_parquet(tmp_path / "bagel", rows)
    spec = load_train_spec("tiny", overrides={"max_steps": 2, "batch_size": 4})
    train(spec, [str(tiny_run), f"{info}=1"], tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "checkpoints" / "step-0000002" / "meta.json").read_text())
    shards_pos, parquet_pos = meta["data"]["positions"]
    assert shards_pos["used_this_epoch"] > 0 or shards_pos["epoch"] > 0
    assert parquet_pos["used_this_epoch"] > 0 or parquet_pos["epoch"] > 0, "parquet examples were trained on"
    assert all(r["mse"] > 0 for r in read_metrics(tmp_path / "out"))


def test_resume_refuses_a_changed_spec_and_paper_models_are_preflighted(
    reference_run, tiny_run, tmp_path, capsys
):
    spec = load_train_spec("tiny", overrides={"optim": {"lr": 0.5}})
    with pytest.raises(TrainError, match=r"spec changed since the checkpoint \(optim\)"):
        train(spec, [str(tiny_run)], reference_run, resume=True)
    assert main(["train", "--data", str(tiny_run), "--out", str(tmp_path / "o"), "--profile", "paper"]) == 1
    err = capsys.readouterr().err
    assert "train.bagel: ByteDance-Seed/BAGEL-7B-MoT" in err and "train.sam: facebook/sam-vit-huge" in err


def test_trains_on_the_exporters_bagel_parquet(tiny_run, tmp_path):
    """``groundedit export --format bagel-parquet`` output (both layouts, by their parquet_info files)
    is training data as it is: every parquet example read is used, none skipped."""
    from groundedit.exporters import export_bagel_parquet
    from groundedit.exporters.bagel import LAYOUTS
    from groundedit.formats.rundata import RunData

    export_bagel_parquet(RunData(tiny_run), tmp_path / "bp", LAYOUTS, 64, 8)
    infos = [str(tmp_path / "bp" / "parquet_info" / f"{layout}.json") for layout in LAYOUTS]
    spec = load_train_spec("tiny", overrides={"max_steps": 2, "batch_size": 2})
    train(spec, infos, tmp_path / "out")
    records = read_metrics(tmp_path / "out")
    assert sum(r["samples"] for r in records) == 4
    assert not any(r.get("skipped") for r in records), records
    assert all(r["mse"] > 0 for r in records)


def test_ema_follows_every_step_from_the_initial_weights(tmp_path):
    """With ``optim.ema_decay`` the exported model is ``ema_k = d · ema_(k-1) + (1 - d) · θ_k`` from
    ``ema_0 = θ_0``, for every trained parameter (the fixed position tables stay as they were)."""
    from groundedit.models.hub import resolve

    shard = write_shard(
        tmp_path / "d" / "a.tar", {f"s{i}": sample_members(f"s{i}", seed=i) for i in range(3)}
    )
    decay, steps = 0.5, 3
    overrides = no_dropout(
        max_steps=steps, batch_size=1, checkpoint_every=1, keep_checkpoints=steps, optim={"ema_decay": decay}
    )
    model_dir = train(load_train_spec("tiny", overrides=overrides), [str(shard)], tmp_path / "out")
    expected = load_file(str(resolve("tiny://bagel")) + "/ema.safetensors")
    for step in range(1, steps + 1):
        theta = load_file(str(tmp_path / "out" / "checkpoints" / f"step-{step:07d}" / "bagel.safetensors"))
        expected = {
            k: v if k.endswith("pos_embed") else decay * v + (1 - decay) * theta[k]
            for k, v in expected.items()
        }
    last = load_file(str(tmp_path / "out" / "checkpoints" / f"step-{steps:07d}" / "ema.safetensors"))
    exported = load_file(str(model_dir / "ema.safetensors"))
    for name, value in expected.items():
        torch.testing.assert_close(exported[name], value, atol=1e-6, rtol=0, msg=name)
        if not name.endswith("pos_embed"):
            torch.testing.assert_close(last[name], value, atol=1e-6, rtol=0, msg=name)
            assert not torch.equal(exported[name], theta[name]), f"{name}: the EMA lags the weights"
