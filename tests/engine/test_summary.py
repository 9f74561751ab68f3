"""RunSummary: the one record of what a run did, counted from the tickets' outcomes."""

from __future__ import annotations

import pytest

from groundedit.engine.summary import RunSummary
from groundedit.engine.tickets import Outcome
from groundedit.formats.manifest import StageSummary


def _summary(*stages: str, planned: int = 4) -> RunSummary:
    summary = RunSummary()
    for name in stages:
        summary.start(StageSummary(stage=name, spec_hash="s", chain_hash="c", units_planned=planned))
    return summary


def test_outcomes_add_up_per_state():
    summary = _summary("render")
    outcomes = [
        Outcome(stage="render", state="ran", rows_in=3, kept=2, rejected={"b": 1}, seconds=0.1234, node="n1"),
        Outcome(
            stage="render", state="done", rows_in=2, kept=0, rejected={"a": 1, "b": 1}, seconds=0.2, node="n2"
        ),
        Outcome(stage="render", state="blocked"),
        Outcome(stage="render", state="quarantined", error="Traceback\nKeyError: boom"),
    ]
    for i, o in enumerate(outcomes):
        summary.count(f"u{i}", o)
    s = summary.seal("render")
    assert (s.units_done, s.units_ran, s.units_blocked, s.units_quarantined) == (2, 1, 1, 1)
    assert (s.rows_in, s.kept, s.complete) == (5, 2, False)
    assert list(s.rejected.items()) == [("b", 2), ("a", 1)], "most frequent reason first"
    assert s.seconds == pytest.approx(0.323) and s.nodes == {"n1": 1, "n2": 1} and s.devices == ["cpu"]
    [q] = summary.quarantined
    assert (q.stage, q.unit, q.error) == ("render", "u3", "Traceback\nKeyError: boom")
    assert summary.sink is None
    assert summary.dropped() == {"render/b": 2, "render/a": 1}


def test_a_stage_is_complete_when_every_planned_unit_is_done():
    summary = _summary("select", planned=2)
    for unit in ("u0", "u1"):
        summary.count(unit, Outcome(stage="select", state="done"))
    assert summary.seal("select").complete


def test_an_outcome_of_a_stage_not_started_is_a_bug():
    with pytest.raises(KeyError):
        _summary("render").count("u0", Outcome(stage="qc", state="ran"))
