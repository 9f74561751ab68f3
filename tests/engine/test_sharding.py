"""Shards and rejected files cut from unit parts: the layout depends on the data, never on timing."""

from __future__ import annotations

import random
import tarfile

import pyarrow.parquet as pq

from groundedit.engine.sharding import CombinedOutput, OutputCombiner, ShardLayout
from groundedit.engine.tickets import Outcome, Ticket
from groundedit.formats.commits import CommitStore, PartSample, RejectedPart, UnitCommit
from groundedit.formats.storage import write_rejected
from groundedit.formats.tar import TarWriter
from groundedit.records import BlobRef, Sample, Source
from groundedit.stages.export import ExportParams


def _unit(out, i: int, keys: list[str], rejected: int = 0) -> UnitCommit:
    """A committed export unit: a part tar holding ``keys`` (one 600-byte member each)."""
    part = f"data/export/u{i}.tar"
    spans = []
    if keys:
        w = TarWriter(out / part)
        for k in keys:
            start = w.bytes_written
            w.add(f"{k}.json", k.encode() * 200)
            spans.append(PartSample(key=k, start=start, end=w.bytes_written))
        w.close()
    parts = []
    if rejected:
        src = Source(
            dataset="images", image_id="x", file_name="x", width=1, height=1, image=BlobRef(path="/x")
        )
        rows = [Sample(key=f"r{i}-{j}", source=src).reject("select", "no_target") for j in range(rejected)]
        write_rejected(rows, out / f"data/select/u{i}.rejected.parquet")
        parts = [RejectedPart(stage="select", file=f"data/select/u{i}.rejected.parquet", rows=rejected)]
    commit = UnitCommit(
        stage="export",
        unit=f"u{i}",
        chain_hash="c",
        input_fingerprint="in",
        output_fingerprint=f"out{i}",
        artifacts=part if keys else None,
        rows_in=len(keys),
        kept=len(keys),
        part_samples=spans,
        rejected_parts=parts,
    )
    return CommitStore(out).write(commit)


def _combine(out, commits, order, params):
    calls = []

    def call(fn, *args):
        calls.append(args[1].name)
        return fn(*args)

    comb = OutputCombiner(out, "export", params, CommitStore(out), call)
    for i in order:
        c = commits[i]
        comb.add(
            Ticket(
                seq=i, unit=c.unit, rows=1, fingerprint="f", outcomes=[Outcome(stage="export", state="done")]
            )
        )
    return comb.finish(), calls


def test_layout_is_the_same_whatever_order_units_finish(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    keys = [["k1", "k2", "k3"], [], ["k4"], ["k5", "k6"]]
    params = ExportParams(shard_max_samples=2, rejected_part_rows=3)
    for out in (a, b):
        commits = [_unit(out, i, ks, rejected=2) for i, ks in enumerate(keys)]
        order = list(range(len(keys)))
        if out == b:
            random.Random(3).shuffle(order)
        totals, _ = _combine(out, commits, order, params)
        assert totals == CombinedOutput(shards=3, samples=6, rejected_rows=8)
    for name in sorted(p.name for p in (a / "shards").glob("*.tar")):
        assert (a / "shards" / name).read_bytes() == (b / "shards" / name).read_bytes()
    with tarfile.open(a / "shards" / "groundedit-000001.tar") as tar:
        assert tar.getnames() == ["k3.json", "k4.json"] and tar.extractfile("k4.json").read() == b"k4" * 200
    assert pq.read_table(a / "rejected.parquet").num_rows == 8
    # 2 rows per unit, at most 3 per file, files end at unit boundaries: one file per unit
    assert sorted(p.name for p in (a / "rejected.parquet").iterdir()) == [
        f"part-{i:06d}.parquet" for i in range(4)
    ]
    for i in range(4):
        name = f"part-{i:06d}.parquet"
        assert pq.read_table(a / "rejected.parquet" / name) == pq.read_table(b / "rejected.parquet" / name)


def test_resume_rewrites_only_what_changed_and_drops_what_is_past_the_end(tmp_path):
    params = ExportParams(shard_max_samples=2)
    commits = [_unit(tmp_path, i, [f"k{i}a", f"k{i}b"]) for i in range(3)]
    _, calls = _combine(tmp_path, commits, [0, 1, 2], params)
    assert calls == [
        "groundedit-000000.tar",
        "groundedit-000001.tar",
        "groundedit-000002.tar",
        "part-000000.parquet",
    ]
    _, calls = _combine(tmp_path, commits, [2, 1, 0], params)
    assert calls == [], "nothing changed: nothing rewritten"
    commits[1] = _unit(tmp_path, 1, ["k1a", "k1b"]).model_copy(update={"output_fingerprint": "new"})
    CommitStore(tmp_path).write(commits[1])
    _, calls = _combine(tmp_path, commits[:2], [0, 1], params)
    assert calls == ["groundedit-000001.tar"]
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == [
        "groundedit-000000.tar",
        "groundedit-000001.tar",
    ]


def test_a_sample_never_splits_and_bytes_bound_shards():
    layout = ShardLayout(max_samples=100, max_bytes=3000)
    spans = [PartSample(key=f"k{i}", start=i * 1000, end=(i + 1) * 1000) for i in range(3)]
    commit = UnitCommit(
        stage="export",
        unit="u",
        chain_hash="c",
        input_fingerprint="i",
        output_fingerprint="o",
        artifacts="p.tar",
        rows_in=3,
        kept=3,
        part_samples=spans,
    )
    closed = layout.add(commit) + layout.finish()
    assert [j.samples for j in closed] == [1, 1, 1]  # 1000 + 1000 + 1024 end blocks > 3000
    assert [(r.start, r.end) for r in closed[0].ranges] == [(0, 1000)]
