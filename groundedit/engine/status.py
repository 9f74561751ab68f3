"""Per-stage status of a run folder, from the plan and the units' commits, judged now.

Walks the last plan unit by unit (memory: one unit) and follows each unit down the chain: a unit
is *done* at a stage when its commit is current (the stage's chain hash, and the input its upstream
commit provides now); once a unit is not done at some stage, its commits at every later stage are
*stale* too, whatever they say. So a change anywhere shows on every stage it will redo.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from groundedit.engine.chain import StageChain
from groundedit.engine.planning import PlanReader
from groundedit.formats.commits import CommitStore, UnitCommit, sink_input
from groundedit.formats.shards import read_shard_stats


@dataclass
class StageStatus:
    stage: str
    state: str  # "done" | "partial" | "stale" | "not started"
    units_done: int = 0
    units_planned: int = 0
    rows_in: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    detail: str = ""
    quarantined: int = 0
    stale: Counter = field(default_factory=Counter)  # why -> units
    nodes: Counter = field(default_factory=Counter)  # node that did it -> done units


def run_status(chain: StageChain) -> list[StageStatus]:
    out = chain.config.out
    plan = PlanReader(out)
    statuses = {n: StageStatus(n, "not started") for n in chain.order}
    if not plan.exists():
        return list(statuses.values())
    commits = CommitStore(out)
    seen: Counter = Counter()
    for ticket in plan.tickets():
        upstream_ok, expected = True, ticket.fingerprint
        made: list[UnitCommit] = []
        for name in chain.order:
            st = statuses[name]
            st.units_planned += 1
            c = commits.read(name, ticket.unit)
            if name == chain.sink:
                expected = sink_input(made) if upstream_ok else None
            if c is not None:
                seen[name] += 1
                st.rows_in += c.rows_in
                st.kept += c.kept
                st.rejected.update(c.rejected)
            why = None
            if not upstream_ok:
                why = "upstream changed" if c is not None else None
            elif c is None:
                failure = commits.read_failure(name, ticket.unit)
                st.quarantined += failure is not None
            elif c.chain_hash != chain.hashes[name]:
                why = "spec, prompt or seed changed"
            elif c.input_fingerprint != expected:
                why = "upstream output changed"
            ok = upstream_ok and c is not None and why is None
            if why:
                st.stale[why] += 1
            st.units_done += ok
            if ok:
                st.nodes[c.node] += 1
            upstream_ok = ok
            if c is not None:
                made.append(c)
                expected = c.output_fingerprint
    for name, st in statuses.items():
        if st.stale:
            st.state = "stale"
            st.detail = ", ".join(f"{n} unit{'s' * (n > 1)}: {why}" for why, n in st.stale.most_common())
        elif st.units_done == st.units_planned:
            st.state = "done"
        elif seen[name] or st.quarantined:
            st.state = "partial"
        if st.quarantined:
            st.detail = ", ".join(filter(None, [st.detail, f"{st.quarantined} failed"]))
    sink = statuses[chain.sink]
    if sink.state != "not started":
        shards = read_shard_stats(out)
        sink.kept = sum(s.samples for s in shards)
        note = f"{len(shards)} shard{'' if len(shards) == 1 else 's'}"
        sink.detail = ", ".join(filter(None, [sink.detail, note])) if sink.state != "done" else note
    return list(statuses.values())
