"""The paper's data mixture: Bagel text-to-image parquet and understanding JSONL, each written the way
Bagel's docs and loaders describe, train beside our grounding shards; metrics.jsonl counts each step's
samples per source."""

from __future__ import annotations

import json

from groundedit.train.logbook import read_metrics
from groundedit.train.spec import load_train_spec
from groundedit.train.trainer import train

from .conftest import encode, picture, sample_members, write_shard
from .test_data import conversation, write_t2i_parquet, write_vlm_sft


def test_t2i_and_understanding_data_train_beside_the_grounding_shards(tmp_path):
    shards = write_shard(
        tmp_path / "run" / "shards" / "groundedit-000000.tar",
        {f"g{i}": sample_members(f"g{i}", seed=i) for i in range(3)},
    )
    t2i = write_t2i_parquet(
        tmp_path / "bagel_example" / "t2i",
        [
            (encode(picture(10 + i, (48, 64))), json.dumps({"caption": f"a photo number {i}"}))
            for i in range(4)
        ],
    )
    vlm = write_vlm_sft(
        tmp_path / "bagel_example" / "vlm",
        [
            {"id": str(i), "image": f"{i}.jpg", "conversations": conversation(1, f"Answer {i}.")}
            for i in range(4)
        ],
        {f"{i}.jpg": encode(picture(20 + i, (60, 40))) for i in range(4)},
    )
    names = [str(shards.parent.parent), str(t2i), str(vlm)]
    spec = load_train_spec("tiny", overrides={"max_steps": 3, "batch_size": 6, "checkpoint_every": 3})
    out = tmp_path / "out"
    train(spec, names, out)
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(r["sources"]) <= set(names) and sum(r["sources"].values()) == r["samples"] == 6
        assert r["mse"] > 0 and not r["skipped"]
    total = {n: sum(r["sources"].get(n, 0) for r in rows) for n in names}
    assert all(total.values()), total  # every kind was trained on
    # the mixture weights of the spec: shards 0.5, t2i 0.15, vlm 0.15 of 18 draws
    assert total[names[0]] > max(total[names[1]], total[names[2]])
    assert any(r["ce"] > 0 for r in rows)
    meta = json.loads((out / "checkpoints" / "step-0000003" / "meta.json").read_text())
    assert [p["used_this_epoch"] + 4 * p["epoch"] > 0 for p in meta["data"]["positions"]] == [True] * 3
