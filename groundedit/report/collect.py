"""What the report shows, gathered from a run folder (through :class:`RunData`) in one pass over the
shards and one over the rejected sidecar; thumbnails are written on the way."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from groundedit import __version__
from groundedit.formats.manifest import StageSummary
from groundedit.formats.rundata import RejectedSample, RunData
from groundedit.report.thumbs import write_thumb

KEPT_IMAGES = {"src": "src.jpg", "grounded": "grounded.jpg", "edited": "edited.jpg"}
REJECTED_IMAGES = {"src": "src.jpg", "grounded": "grounded.jpg", "edited": "edited.jpg"}
QC_METRICS = ("region_edit_accuracy", "seamless_quality")


@dataclass
class GalleryItem:
    key: str
    edit_type: str | None
    label: str | None
    instruction: str | None
    rewritten: str | None
    cot: dict[str, str]
    scores: dict[str, float | int | None]
    thumbs: dict[str, str]  # column -> path relative to the page


@dataclass
class RejectedItem:
    key: str
    detail: str
    raw: str | None
    thumbs: dict[str, str]
    scores: dict[str, float | int]  # the scores it had when dropped (none absent)


@dataclass
class RejectedGroup:
    stage: str
    reason: str
    count: int
    items: list[RejectedItem] = field(default_factory=list)


@dataclass
class StageCost:
    stage: str
    worker_seconds: float  # units + setup
    gpu_seconds: float
    devices: str
    gpu_seconds_per_kept: float | None


@dataclass
class ReportData:
    out: str
    generated: str
    version: str
    info: dict[str, object]
    stages: list[StageSummary]
    inputs: int
    kept: int
    edit_types: Counter
    qc: dict[str, tuple[list[float], list[float]]]  # metric -> (kept values, rejected values)
    ega: tuple[list[float], list[float]]
    costs: list[StageCost]
    nodes: list[str]  # every node that did units, for the per-node table
    gallery: list[GalleryItem]
    rejected: dict[str, list[RejectedGroup]]  # stage -> groups by reason
    gallery_limit: int
    rejected_per_reason: int

    @property
    def rejected_total(self) -> int:
        return sum(s.rejected_total for s in self.stages)

    @property
    def worker_seconds(self) -> float:
        return sum(c.worker_seconds for c in self.costs)

    @property
    def gpu_seconds(self) -> float:
        return sum(c.gpu_seconds for c in self.costs)

    def per_kept(self, seconds: float) -> float | None:
        return seconds / self.kept if self.kept else None


def collect(run: RunData, folder: Path, gallery_limit: int, rejected_per_reason: int) -> ReportData:
    """Gather the report's data from ``run``, writing thumbnails under ``folder/thumbs``."""
    stages = run.stages()
    kept_stage = stages[-1] if stages else None
    kept = kept_stage.kept if kept_stage and kept_stage.stage == "export" else 0
    edit_types: Counter = Counter()
    qc: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in QC_METRICS}
    ega: tuple[list[float], list[float]] = ([], [])
    gallery: list[GalleryItem] = []
    for i, s in enumerate(run.samples(members=gallery_limit)):
        r = s.record
        edit_types[r.edit_type or "none"] += 1
        _add_scores(r.scores.model_dump(), qc, ega, 0)
        if i >= gallery_limit:
            continue
        thumbs = {}
        for col, member in KEPT_IMAGES.items():
            rel = f"thumbs/kept/{s.key}.{col}.jpg"  # keys are file names (groundedit.formats.keys)
            if write_thumb(s.members.get(member), folder / rel):
                thumbs[col] = rel
        gallery.append(
            GalleryItem(
                key=s.key,
                edit_type=r.edit_type,
                label=r.target.label,
                instruction=r.instructions.original if r.instructions else None,
                rewritten=r.instructions.rewritten if r.instructions else None,
                cot=r.cot.model_dump(by_alias=True) if r.cot else {},
                scores=r.scores.model_dump(),
                thumbs=thumbs,
            )
        )
    groups = _rejected_groups(run, stages, folder, rejected_per_reason, qc, ega)
    return ReportData(
        out=str(run.out),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        info=run.config.model_dump(mode="json"),
        stages=stages,
        inputs=stages[0].rows_in if stages else 0,
        kept=kept,
        edit_types=edit_types,
        qc=qc,
        ega=ega,
        costs=[
            StageCost(
                s.stage,
                round(s.seconds + s.setup_seconds, 3),
                s.gpu_seconds,
                ", ".join(s.devices),
                s.gpu_seconds / kept if kept and s.gpu_seconds else None,
            )
            for s in stages
        ],
        nodes=sorted({n for s in stages for n in s.nodes}),
        gallery=gallery,
        rejected=groups,
        gallery_limit=gallery_limit,
        rejected_per_reason=rejected_per_reason,
    )


def _add_scores(scores: dict, qc, ega, side: int) -> None:
    for m in QC_METRICS:
        if scores.get(m) is not None:
            qc[m][side].append(float(scores[m]))
    if scores.get("ega") is not None:
        ega[side].append(float(scores["ega"]))


def _rejected_groups(
    run: RunData, stages: list[StageSummary], folder: Path, per_reason: int, qc, ega
) -> dict[str, list[RejectedGroup]]:
    """Rejected samples by stage and reason (counts from the manifests, up to ``per_reason``
    examples each with thumbnails); adds rejected samples' scores to the score distributions."""
    groups: dict[tuple[str, str], RejectedGroup] = {}
    by_stage: dict[str, list[RejectedGroup]] = {}
    for s in stages:
        for reason, count in s.rejected.items():
            g = groups[(s.stage, reason)] = RejectedGroup(s.stage, reason, count)
            by_stage.setdefault(s.stage, []).append(g)

    def want(stage: str, reason: str) -> bool:
        g = groups.get((stage, reason))
        return g is None or len(g.items) < per_reason or _scored_stage(stage)

    unlisted: set[tuple[str, str]] = set()  # in the sidecar, not in the manifests: counted here
    for r in run.rejected(want):
        _add_scores(r.sample.scores.model_dump(), qc, ega, 1)
        g = groups.get((r.stage, r.reason))
        if g is None:
            g = groups[(r.stage, r.reason)] = RejectedGroup(r.stage, r.reason, 0)
            by_stage.setdefault(r.stage, []).append(g)
            unlisted.add((r.stage, r.reason))
        if (r.stage, r.reason) in unlisted:
            g.count += 1
        if len(g.items) < per_reason:
            g.items.append(_rejected_item(run, r, folder))
    return by_stage


def _scored_stage(stage: str) -> bool:
    """Stages whose rejected samples carry edit scores (EGA, QC) worth plotting."""
    return stage in ("edit", "qc")


def _rejected_item(run: RunData, r: RejectedSample, folder: Path) -> RejectedItem:
    thumbs = {}
    base = f"thumbs/rejected/{r.stage}/{r.key}"
    for col, name in REJECTED_IMAGES.items():
        if write_thumb(run.rejected_image(r, name), folder / f"{base}.{col}.jpg"):
            thumbs[col] = f"{base}.{col}.jpg"
    if not thumbs and write_thumb(run.rejected_image(r, "source"), folder / f"{base}.src.jpg"):
        thumbs["src"] = f"{base}.src.jpg"
    scores = {k: v for k, v in r.sample.scores.model_dump().items() if v is not None}
    return RejectedItem(r.key, r.detail, r.raw, thumbs, scores)
