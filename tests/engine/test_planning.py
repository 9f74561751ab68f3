"""Planning streams the input with bounded memory, fingerprints units by content and reads an
unchanged tar's headers only once (its listing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from groundedit.engine.planning import (
    PlanReader,
    PlanWriter,
    SourcePlanner,
    stamp_loose_files,
    unit_fingerprint,
)
from groundedit.fixtures import write_sa1b_fixture
from groundedit.formats.commits import CommitStore, UnitCommit
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.scan import KeyIndex, iter_units, plan_units
from groundedit.specs import load_spec
from groundedit.stages.ingest import IngestStage


def test_limit_stops_listing(tmp_path):
    write_sa1b_fixture(tmp_path, images=6, images_per_tar=3)
    (tmp_path / "sa_000001.tar").write_bytes(b"not a tar at all")  # listing it would fail
    units = list(iter_units(tmp_path, unit_size=2, limit=3))
    assert [(u, len(e)) for u, e in units] == [("sa_000000.tar-00000", 2), ("sa_000000.tar-00001", 1)]


def test_units_stream_one_group_at_a_time(tmp_path, monkeypatch):
    import groundedit.formats.scan as scan

    write_sa1b_fixture(tmp_path, images=4, images_per_tar=2)
    opened, real = [], scan.scan_tar
    monkeypatch.setattr(scan, "scan_tar", lambda p: opened.append(p.name) or real(p))
    it = iter_units(tmp_path, unit_size=10)
    assert next(it)[0] == "sa_000000.tar-00000"
    assert opened == ["sa_000000.tar"], "the second tar is listed only when the plan reaches it"
    assert [u for u, _ in it] == ["sa_000001.tar-00000"]


def test_duplicates_are_found_through_the_key_index(tmp_path):
    write_sa1b_fixture(tmp_path / "one", images=2, images_per_tar=2)
    write_sa1b_fixture(tmp_path / "two", images=2, images_per_tar=2)
    keys = KeyIndex(tmp_path / "keys.sqlite")
    entries = [e for _, es in iter_units(tmp_path, unit_size=1, keys=keys) for e in es]
    assert [e.error for e in entries] == [None, None, "duplicate_key", "duplicate_key"]
    assert len({e.key for e in entries}) == 4


def _loose(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"first version")
    [(unit, entries)] = plan_units(tmp_path / "in", unit_size=4)
    return unit, entries


def test_loose_files_fingerprint_by_content_not_mtime(tmp_path, monkeypatch):
    import groundedit.engine.planning as planning

    _, entries = _loose(tmp_path)
    stamped, stamps = stamp_loose_files(entries, [])
    assert stamped[0].image.digest and stamped[0].image.size == len(b"first version")
    fp = unit_fingerprint(stamped)
    path = tmp_path / "in" / "a.jpg"
    os.utime(path, ns=(1, 1))  # touch (or an rsync without times): content unchanged
    again, restamped = stamp_loose_files(entries, stamps)
    assert unit_fingerprint(again) == fp
    calls = []
    monkeypatch.setattr(planning, "file_digest", lambda p: calls.append(p) or "x" * 32)
    stamp_loose_files(entries, restamped)
    assert calls == [], "unchanged size, mtime and inode: the recorded digest is reused"
    older = [s.model_copy(update={"algorithm": "sha256"}) for s in restamped]
    stamp_loose_files(entries, older)
    assert calls == [str(path.resolve())], "a digest made another way is made again"
    monkeypatch.undo()
    path.write_bytes(b"other version")  # same size, other bytes
    os.utime(path, ns=(1, 1))
    changed, _ = stamp_loose_files(entries, [s.model_copy(update={"mtime_ns": 2}) for s in restamped])
    assert unit_fingerprint(changed) != fp


def test_tar_units_fingerprint_by_member_table(tmp_path):
    write_sa1b_fixture(tmp_path / "a", images=2, images_per_tar=2, seed=1)
    [(_, entries)] = plan_units(tmp_path / "a", unit_size=4)
    fp = unit_fingerprint(stamp_loose_files(entries, [])[0])
    os.utime(tmp_path / "a" / "sa_000000.tar", ns=(5, 5))
    [(_, entries)] = plan_units(tmp_path / "a", unit_size=4)
    assert unit_fingerprint(stamp_loose_files(entries, [])[0]) == fp
    write_sa1b_fixture(tmp_path / "b", images=2, images_per_tar=2, seed=2)
    os.replace(tmp_path / "b" / "sa_000000.tar", tmp_path / "a" / "sa_000000.tar")
    [(_, entries)] = plan_units(tmp_path / "a", unit_size=4)
    assert unit_fingerprint(stamp_loose_files(entries, [])[0]) != fp


def test_plan_round_trip_keeps_entries_only_for_units_to_do(tmp_path):
    unit, entries = _loose(tmp_path)
    writer = PlanWriter(tmp_path / "run")
    todo = writer.add(unit, 1, "fp1", entries, [])
    done = writer.add("other-00000", 3, "fp2", None, [])
    writer.commit()
    reader = PlanReader(tmp_path / "run")
    assert reader.info().units == 2 and reader.info().rows == 4
    assert [t.unit for t in reader.tickets()] == [unit, "other-00000"]
    assert reader.entries(todo)[0] == entries
    try:
        reader.entries(done)
    except RuntimeError as e:
        assert "no entries" in str(e)
    else:
        raise AssertionError("a done unit's entries are not kept")


def test_stamps_come_back_from_the_units_commit(tmp_path):
    unit, entries = _loose(tmp_path)
    _, stamps = stamp_loose_files(entries, [])
    store = CommitStore(tmp_path / "run")
    store.write(
        UnitCommit(
            stage="ingest",
            unit=unit,
            chain_hash="c",
            input_fingerprint="f",
            output_fingerprint="o",
            rows_in=1,
            kept=1,
            source_stamps=stamps,
        )
    )
    assert store.read("ingest", unit).source_stamps == stamps
    assert store.read("ingest", unit).committed_ns > 0


# --- tar listings: re-planning reads no tar header while a tar is unchanged ----------------------


@pytest.fixture
def tar_reads(monkeypatch):
    """The tars whose headers planning reads (``scan_tar`` calls, by file name)."""
    import groundedit.formats.scan as scan

    reads, real = [], scan.scan_tar
    monkeypatch.setattr(scan, "scan_tar", lambda p: reads.append(Path(p).name) or real(p))
    return reads


def _plan(inp, out, unit_size=2, limit=None):
    """One planning as the driver does it (the ingest stage, listings under ``out``)."""
    spec = load_spec("ingest", "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, "unit_size": unit_size}})
    stage = IngestStage(spec, RunConfig(out=out, input=inp, seed=0, profile="tiny", limit=limit))
    return list(SourcePlanner(stage, "chain", CommitStore(out)).units())


def _rows(planned):
    return [(p.unit, p.rows, p.fingerprint, p.entries) for p in planned]


def _mark_done(out, planned):
    store = CommitStore(out)
    for p in planned:
        commit = UnitCommit(
            stage="ingest",
            unit=p.unit,
            chain_hash="chain",
            input_fingerprint=p.fingerprint,
            output_fingerprint="o",
            rows_in=p.rows,
            kept=0,
        )
        store.write(commit)


def test_replanning_unchanged_tars_reads_no_header(tmp_path, tar_reads, monkeypatch):
    from groundedit.formats.listing import TarListings

    inp, out = tmp_path / "in", tmp_path / "run"
    write_sa1b_fixture(inp, images=6, images_per_tar=3)
    first = _plan(inp, out)
    assert tar_reads == ["sa_000000.tar", "sa_000001.tar"]
    assert [p.unit for p in first] == [f"sa_00000{t}.tar-0000{u}" for t in (0, 1) for u in (0, 1)]
    again = _plan(inp, out)
    assert tar_reads == ["sa_000000.tar", "sa_000001.tar"], "no header read the second time"
    assert _rows(again) == _rows(first), "units to do get the same entries from the listing"
    _mark_done(out, first)
    tables = []
    real = TarListings.members
    monkeypatch.setattr(TarListings, "members", lambda self, s: tables.append(s) or real(self, s))
    done = _plan(inp, out)
    assert [(p.unit, p.rows, p.fingerprint, p.done, p.entries) for p in done] == [
        (p.unit, p.rows, p.fingerprint, True, None) for p in first
    ]
    assert len(tar_reads) == 2 and tables == [], "done units cost neither headers nor member tables"


def test_a_tar_whose_stat_changed_is_listed_again(tmp_path, tar_reads):
    inp, out = tmp_path / "in", tmp_path / "run"
    write_sa1b_fixture(inp, images=6, images_per_tar=3, seed=1)
    first = _plan(inp, out)
    st = os.stat(inp / "sa_000000.tar")
    os.utime(inp / "sa_000000.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    tar_reads.clear()
    touched = _plan(inp, out)
    assert tar_reads == ["sa_000000.tar"], "a new mtime: listed again (the other tar is not)"
    assert _rows(touched) == _rows(first), "same members, same units"
    write_sa1b_fixture(tmp_path / "other", images=3, images_per_tar=3, seed=2)
    os.replace(tmp_path / "other" / "sa_000000.tar", inp / "sa_000001.tar")  # other bytes, other size
    tar_reads.clear()
    replaced = _plan(inp, out)
    assert tar_reads == ["sa_000001.tar"]
    assert [p.fingerprint for p in replaced[:2]] == [p.fingerprint for p in first[:2]]
    assert [p.fingerprint for p in replaced[2:]] != [p.fingerprint for p in first[2:]]


def test_listed_tars_still_get_duplicate_keys_from_earlier_groups(tmp_path, tar_reads):
    """A tar listed alone, then planned after a new tar holding the same SA-1B images: its units
    come from its member table with duplicate_key errors, exactly as without listings; with the new
    tar gone again, its listing is used as it was."""
    inp, out = tmp_path / "in", tmp_path / "run"
    write_sa1b_fixture(inp / "b", images=2, images_per_tar=2, seed=3)
    alone = _plan(inp, out)
    write_sa1b_fixture(inp / "a", images=2, images_per_tar=2, seed=4)  # sa_1, sa_2 again, planned first
    tar_reads.clear()
    both = _plan(inp, out)
    assert tar_reads == ["sa_000000.tar"] and both[0].unit.startswith("a%2F")
    fresh = [e for _, es in iter_units(inp, unit_size=2) for e in es]
    assert [e for p in both for e in p.entries] == fresh
    assert [e.error for e in fresh] == [None, None, "duplicate_key", "duplicate_key"]
    import shutil

    shutil.rmtree(inp / "a")
    tar_reads.clear()
    assert _rows(_plan(inp, out)) == _rows(alone)
    assert tar_reads == []


def test_a_limit_inside_a_tar_keeps_its_member_table(tmp_path, tar_reads):
    inp, out = tmp_path / "in", tmp_path / "run"
    write_sa1b_fixture(inp, images=6, images_per_tar=3)
    limited = _plan(inp, out, limit=4)
    assert sum(p.rows for p in limited) == 4
    tar_reads.clear()
    full = _plan(inp, out)
    assert tar_reads == [], "the cut tar's member table was kept"
    assert [e for p in full for e in p.entries] == [e for _, es in iter_units(inp, unit_size=2) for e in es]
