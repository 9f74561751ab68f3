"""Training data: our shards and Bagel parquet, bad samples skipped by reason, weights, exact resume."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groundedit.bagel_parquet import IMAGE_LIST, INSTRUCTION_LIST, NUM_ROW_GROUPS
from groundedit.train.data import DataError, DataMixture, parse_data_arg

from .conftest import encode, picture, sample_members, write_shard


def write_bagel_parquet(folder, rows: list[tuple[list[bytes], list[list[str]]]], rows_per_group: int = 2):
    """A parquet file plus its parquet_info JSON, laid out as Bagel's TRAIN.md and edit loader expect."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            IMAGE_LIST: pa.array([r[0] for r in rows], pa.list_(pa.binary())),
            INSTRUCTION_LIST: pa.array([r[1] for r in rows], pa.list_(pa.list_(pa.string()))),
        }
    )
    path = folder / "edits-00000.parquet"
    pq.write_table(table, path, row_group_size=rows_per_group)
    info = folder / "parquet_info" / "edits.json"
    info.parent.mkdir()
    info.write_text(json.dumps({str(path): {NUM_ROW_GROUPS: pq.ParquetFile(path).num_row_groups}}))
    return info


@pytest.fixture
def mixed_shard(tmp_path):
    bad_cot = sample_members("nocot", cot=None)
    bad_json = sample_members("badjson")
    bad_json["json"] = b"{not json"
    no_edit = sample_members("noedit")
    del no_edit["edited.jpg"]
    corrupt = sample_members("corrupt")
    corrupt["src.jpg"] = corrupt["src.jpg"][:100]
    empty_mask = sample_members("emptymask")
    empty_mask["mask.png"] = encode(picture(0).convert("L").point(lambda _: 0), "PNG")
    samples = {
        "good0": sample_members("good0"),
        "nocot": bad_cot,
        "badjson": bad_json,
        "noedit": no_edit,
        "corrupt": corrupt,
        "emptymask": empty_mask,
        "good1": sample_members("good1", seed=5),
    }
    return write_shard(tmp_path / "run" / "shards" / "groundedit-000000.tar", samples)


def test_bad_samples_are_skipped_with_their_reason(mixed_shard):
    data = DataMixture.from_args([str(mixed_shard.parent.parent)])  # a run folder
    keys = [data.next()[1].key for _ in range(4)]
    assert sorted(keys[:2]) == ["good0", "good1"] and sorted(keys[2:]) == ["good0", "good1"]
    assert data.skipped == Counter(
        cot_missing=2, record_invalid=2, member_missing=2, src_image_truncated=2, mask_empty=2
    )
    ex = data.next()[1]
    assert ex.grounding is not None and ex.grounding.mask.shape == (48, 64)
    assert ex.instructions == ["make the car on the left blue"]  # the rewritten one


def test_empty_missing_and_useless_data_are_one_clear_error(tmp_path, mixed_shard):
    with pytest.raises(DataError, match="no such file"):
        DataMixture.from_args([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.tar shards"):
        DataMixture.from_args([str(tmp_path / "empty")])
    bad = write_shard(tmp_path / "bad" / "x.tar", {"nocot": sample_members("nocot", cot=None)})
    data = DataMixture.from_args([str(bad)])
    with pytest.raises(DataError, match=r"no usable sample.*cot_missing 1"):
        data.next()
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="shard_unreadable"):
        DataMixture.from_args([str(tmp_path / "junk.tar")]).next()
    with pytest.raises(DataError, match="weight"):
        parse_data_arg(f"{mixed_shard}=-1")
    assert parse_data_arg(f"{mixed_shard}=2.5") == (mixed_shard, 2.5)


def test_position_resumes_exactly(tmp_path):
    shards = [
        write_shard(
            tmp_path / f"s{i}.tar", {f"k{i}{j}": sample_members(f"k{i}{j}", (32, 32)) for j in range(3)}
        )
        for i in range(2)
    ]
    args = [str(tmp_path)]
    reference = DataMixture.from_args(args, seed=3)
    first = [reference.next()[1].key for _ in range(4)]
    state = json.loads(json.dumps(reference.state_dict()))  # survives JSON, as in meta.json
    after = [reference.next() for _ in range(8)]
    resumed = DataMixture.from_args(args, seed=3)
    resumed.load_state_dict(state)
    assert [(d, e.key) for d, e in (resumed.next() for _ in range(8))] == [(d, e.key) for d, e in after]
    # epochs reshuffle the shard order; every sample appears once per epoch
    keys = first + [e.key for _, e in after]
    assert sorted(keys[:6]) == sorted(keys[6:12]) == sorted(f"k{i}{j}" for i in range(2) for j in range(3))
    assert len(shards) == 2


def test_sources_mix_by_weight(tmp_path):
    a = write_shard(tmp_path / "a.tar", {"a": sample_members("a", (16, 16))})
    b = write_shard(tmp_path / "b.tar", {"b": sample_members("b", (16, 16))})
    data = DataMixture.from_args([f"{a}=3", str(b)], seed=0)
    draws = Counter(data.next()[1].key for _ in range(200))
    assert 0.62 < draws["a"] / 200 < 0.88


def test_bagel_parquet_rows_become_edit_chains(tmp_path):
    imgs = [encode(picture(i, (32, 32))) for i in range(4)]
    info = write_bagel_parquet(
        tmp_path,
        [
            ([imgs[0], imgs[1]], [["turn it red", "make it red"]]),
            ([imgs[0], imgs[1], imgs[2], imgs[3]], [["a"], ["b"], ["c"]]),
            ([imgs[0], imgs[1], imgs[2]], [["only one list"]]),  # lengths disagree: skipped
            ([imgs[0], b"broken"], [["x"]]),
        ],
    )
    data = DataMixture.from_args([str(info)], seed=0)
    examples = [data.next()[1] for _ in range(6)]
    assert set(data.skipped) == {"list_length_mismatch", "image_not_an_image"}
    for ex in examples:
        assert ex.grounding is None and len(ex.images) == len(ex.instructions) + 1
        assert 1 <= len(ex.instructions) <= 2 and ex.images[0].size == (32, 32)
    first = [ex for ex in examples if ex.key.endswith(":0")]
    assert first and all(ex.instructions[0] in ("turn it red", "make it red") for ex in first)
    chains = [ex for ex in examples if ex.key.endswith(":1")]
    assert chains and all(" ".join(ex.instructions) in ("a", "b", "c", "a b", "b c") for ex in chains)
    # a folder of parquet files works without the JSON (row groups from the footers)
    folder = DataMixture.from_args([str(tmp_path)], seed=0)
    assert folder.next()[1].key == examples[0].key


def test_ranks_stripe_one_stream_and_resume(tmp_path):
    """Two ranks take alternate items of the one shuffled stream (across tar files and epochs), with the
    global draw numbers one process would give them, and each resumes from its own position."""
    for t, n in enumerate((3, 2)):  # an odd epoch: the stripes run on across epochs
        write_shard(
            tmp_path / "shards" / f"s{t}.tar",
            {f"t{t}k{i}": sample_members(f"t{t}k{i}", seed=i) for i in range(n)},
        )
    one = DataMixture.from_args([str(tmp_path)], seed=3)
    expected = [(draw, ex.key) for draw, ex in (one.next() for _ in range(9))]  # 1.8 epochs
    ranks = [DataMixture.from_args([str(tmp_path)], seed=3, rank=r, world_size=2) for r in range(2)]
    got = {}
    for rank in ranks:
        for _ in range(2):
            draw, ex = rank.next()
            got[draw] = ex.key
    resumed = DataMixture.from_args([str(tmp_path)], seed=3, rank=1, world_size=2)
    resumed.load_state_dict(ranks[1].state_dict())
    for data in (ranks[0], resumed, ranks[0], resumed, ranks[0]):
        draw, ex = data.next()
        got[draw] = ex.key
    assert sorted(got.items()) == expected
