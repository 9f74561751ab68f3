"""Training data: our shards, Bagel edit and t2i parquet and vlm_sft JSONL, bad samples skipped by reason, kinds
and weights, exact resume."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groundedit.formats.bagel_parquet import IMAGE_LIST, INSTRUCTION_LIST, NUM_ROW_GROUPS
from groundedit.train.data import DataArg, DataError, DataMixture, parse_data_arg, source_weights
from groundedit.train.examples import CaptionExample, ConversationExample, Utterance

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
    with pytest.raises(DataError, match="no training data here"):
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
    assert parse_data_arg(f"{mixed_shard}=2.5") == DataArg(mixed_shard, 2.5)
    assert parse_data_arg(f"t2i_pretrain:{tmp_path}=3") == DataArg(tmp_path, 3.0, "t2i_pretrain")
    assert parse_data_arg(str(mixed_shard)) == DataArg(mixed_shard)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no training data here"):
        DataMixture.from_args([str(tmp_path / "notes.txt")])
    with pytest.raises(DataError, match="4 samples in a row skipped"):
        many_bad = {f"b{i}": sample_members(f"b{i}", cot=None) for i in range(5)}
        DataMixture.from_args(
            [str(write_shard(tmp_path / "many" / "x.tar", many_bad))], max_skips_in_a_row=4
        ).next()


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


def write_t2i_parquet(folder, rows: list[tuple[bytes, str]], rows_per_group: int = 2):
    """Bagel's t2i_pretrain layout: a folder of parquet files with ``image`` bytes and ``captions``, a JSON
    object of alternative captions (what its T2IIterableDataset reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image": pa.array([r[0] for r in rows], pa.binary()), "captions": [r[1] for r in rows]})
    pq.write_table(table, folder / "t2i-00000.parquet", row_group_size=rows_per_group)
    return folder


def write_vlm_sft(folder, lines: list[dict | str], images: dict[str, bytes]):
    """Bagel's vlm_sft example layout: ``vlm/<name>.jsonl`` (LLaVA conversations) + ``vlm/images/``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "images" / name).write_bytes(data)
    path = folder / "llava_ov_si.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def conversation(images: int, answer: str = "A red car.") -> list[dict]:
    return [
        {"from": "human", "value": "<image>\n" * images + "What is in the picture?"},
        {"from": "gpt", "value": answer},
    ]


def test_t2i_parquet_rows_become_caption_examples(tmp_path):
    img = encode(picture(0, (32, 32)))
    folder = write_t2i_parquet(
        tmp_path / "t2i",
        [
            (img, json.dumps({"caption_0": "a red car", "caption_1": "a small red car"})),
            (img, "not json"),
            (b"broken", json.dumps({"c": "x"})),
            (img, json.dumps({})),
        ],
    )
    data = DataMixture.from_args([str(folder)], seed=0)
    assert data.streams[0].source.kind == "t2i_pretrain"
    examples = [data.next()[1] for _ in range(3)]
    assert all(isinstance(ex, CaptionExample) and ex.image.size == (32, 32) for ex in examples)
    assert {ex.caption for ex in examples} <= {"a red car", "a small red car"}
    # three passes over one good and three bad rows: every bad row skipped with its reason once a pass
    assert set(data.skipped) == {"caption_invalid", "image_not_an_image", "caption_missing"}
    assert all(2 <= n <= 3 for n in data.skipped.values())
    assert all(ex.source == str(folder) for ex in examples)
    # one parquet file is a source too
    assert DataMixture.from_args([str(folder / "t2i-00000.parquet")]).next()[1].caption == examples[0].caption


def test_vlm_sft_jsonl_lines_become_conversations(tmp_path):
    jpg = encode(picture(1, (40, 30)))
    lines = [
        {"id": "0", "image": "a.jpg", "conversations": conversation(1)},
        {"id": "1", "image": ["a.jpg", "sub/b.jpg"], "conversations": conversation(2, "Two cars.")},
        {"id": "2", "conversations": conversation(0, "Nothing to see.")},  # text only
        "",  # blank lines are not samples
        {"id": "3", "image": "a.jpg", "conversations": conversation(2)},  # placeholders != images
        {"id": "4", "image": "missing.jpg", "conversations": conversation(1)},
        {"id": "5", "video": "v.mp4", "conversations": conversation(1)},
        {"id": "6", "image": "a.jpg", "conversations": conversation(1, "  ")},  # no answer
        {"id": "7", "image": "../a.jpg", "conversations": conversation(1)},
        "{broken",
    ]
    path = write_vlm_sft(tmp_path / "vlm", lines, {"a.jpg": jpg, "sub/b.jpg": jpg})
    data = DataMixture.from_args([str(path)], seed=0)
    assert data.streams[0].source.kind == "vlm_sft"
    examples = [data.next()[1] for _ in range(4)]  # the fourth draw passes the bad lines to the next epoch
    assert all(isinstance(ex, ConversationExample) for ex in examples)
    assert [len(ex.images) for ex in examples] == [1, 2, 0, 1] and examples[3].key == examples[0].key
    first = examples[0]
    assert first.parts == [0, Utterance("What is in the picture?", False), Utterance("A red car.", True)]
    assert data.skipped == Counter(
        image_count_mismatch=1,
        image_missing=1,
        video_unsupported=1,
        no_answer=1,
        image_path_unsafe=1,
        line_invalid=1,
    )
    # a folder holding the JSONL and images/ is the same source
    assert DataMixture.from_args([str(tmp_path / "vlm")], seed=0).next()[1].parts == first.parts


def test_vlm_sft_byte_ranges_read_every_line_once_and_resume(tmp_path, monkeypatch):
    from groundedit.train import vlm_jsonl

    monkeypatch.setattr(vlm_jsonl, "CHUNK_BYTES", 150)  # many small units, lines cut across their edges
    lines = [{"id": str(i), "conversations": conversation(0, f"answer {i}")} for i in range(12)]
    path = write_vlm_sft(tmp_path / "vlm", lines, {})
    source = vlm_jsonl.VlmJsonlSource.from_path(path)
    assert len(source.units()) > 6
    answers = [ex.parts[-1].text for u in range(len(source.units())) for ex in source.read(u, 0, "s")]
    assert sorted(answers) == sorted(f"answer {i}" for i in range(12))
    args = [str(path)]
    reference = DataMixture.from_args(args, seed=1)
    first = [reference.next()[1].key for _ in range(5)]
    state = json.loads(json.dumps(reference.state_dict()))
    after = [reference.next()[1].key for _ in range(10)]
    resumed = DataMixture.from_args(args, seed=1)
    resumed.load_state_dict(state)
    assert [resumed.next()[1].key for _ in range(10)] == after
    assert len(set(first + after[:7])) == 12  # one epoch: every line once


def test_kinds_are_recognised_and_weighted_by_the_mixture(tmp_path):
    img = encode(picture(0, (32, 32)))
    shard = write_shard(tmp_path / "shards" / "a.tar", {"a": sample_members("a", (16, 16))})
    edit = write_bagel_parquet(tmp_path / "edit", [([img, img], [["x"]])])
    t2i = write_t2i_parquet(tmp_path / "t2i", [(img, json.dumps({"c": "a car"}))])
    vlm = write_vlm_sft(tmp_path / "vlm", [{"conversations": conversation(0)}], {})
    weights = {"groundedit": 0.5, "unified_edit": 0.2, "t2i_pretrain": 0.3}
    args = [str(shard.parent), str(edit), str(edit.parent.parent), str(t2i), f"{vlm}=0.1"]
    data = DataMixture.from_args(args, kind_weights=weights)
    kinds = [s.source.kind for s in data.streams]
    assert kinds == ["groundedit", "unified_edit", "unified_edit", "t2i_pretrain", "vlm_sft"]
    # a kind's weight is shared by its sources; an explicit weight stands; an unlisted kind weighs 1
    assert data.weights == [0.5, 0.1, 0.1, 0.3, 0.1]
    sources = [(s.source, parse_data_arg(a)) for s, a in zip(data.streams, args, strict=True)]
    assert source_weights(sources, {})[:4] == [1.0, 0.5, 0.5, 1.0]
    # a folder holding two kinds is read as the first; a KIND: prefix picks the other
    both = write_t2i_parquet(tmp_path / "both", [(img, json.dumps({"c": "a car"}))])
    write_vlm_sft(both, [{"conversations": conversation(0)}], {})
    assert DataMixture.from_args([str(both)]).streams[0].source.kind == "t2i_pretrain"
    forced = DataMixture.from_args([f"vlm_sft:{both}=2"])
    assert forced.streams[0].source.kind == "vlm_sft" and isinstance(forced.next()[1], ConversationExample)
    with pytest.raises(DataError, match=r"no \.jsonl"):
        DataMixture.from_args([f"vlm_sft:{t2i}"])
