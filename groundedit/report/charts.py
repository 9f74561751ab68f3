"""The report's charts, drawn with matplotlib (Agg backend) into SVG files beside the page."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from groundedit.report.collect import QC_METRICS, ReportData

KEPT, REJECTED = "#2e7d32", "#c62828"
QC_TITLES = {"region_edit_accuracy": "RegionEditAccuracy", "seamless_quality": "SeamlessQuality"}


def write_charts(data: ReportData, folder: Path) -> dict[str, str]:
    """Draw every chart into ``folder/charts``; name -> path relative to the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "groundedit", "font.size": 9, "svg.fonttype": "none"})
    (folder / "charts").mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in (
        ("funnel", _funnel),
        ("edit_types", _edit_types),
        ("qc_scores", _qc_scores),
        ("ega", _ega),
        ("cost", _cost),
    ):
        fig = draw(plt, data)
        rel = f"charts/{name}.svg"
        fig.savefig(folder / rel, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
        out[name] = rel
    return out


def _no_data(ax, text: str = "no data in this run") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _funnel(plt, data: ReportData):
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(data.stages), 3) + 0.8))
    if not data.stages:
        _no_data(ax)
        return fig
    names = [s.stage for s in data.stages][::-1]
    kept = [s.kept for s in data.stages][::-1]
    rejected = [s.rejected_total for s in data.stages][::-1]
    bars = (
        ax.barh(names, kept, color=KEPT, label="kept"),
        ax.barh(names, rejected, left=kept, color=REJECTED, label="rejected"),
    )
    # Element ids in the SVG (gid), so a browser test can measure what overlaps what.
    for side, container in zip(("kept", "rejected"), bars, strict=True):
        for name, patch in zip(names, container.patches, strict=True):
            patch.set_gid(f"funnel-bar-{side}-{name}")
    for y, (name, k, r) in enumerate(zip(names, kept, rejected, strict=True)):
        ax.text(k + r, y, f" {k} / {k + r}", va="center", fontsize=8, gid=f"funnel-count-{name}")
    # Room right of the longest bar for its count (margins would not do: a bar's edge is "sticky").
    ax.set_xlim(0, max(max(k + r for k, r in zip(kept, rejected, strict=True)), 1) * 1.35)
    ax.set_xlabel("samples (kept / in)")
    ax.set_title("Per-stage funnel", loc="left")
    # Above the axes, right of the title: the first stages' bars span the whole width and their
    # counts stand right of them, so any spot inside the axes or beside them would cover one.
    legend = ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False)
    legend.set_gid("funnel-legend")
    return fig


def _edit_types(plt, data: ReportData):
    fig, ax = plt.subplots(figsize=(5, 2.8))
    if not data.edit_types:
        _no_data(ax, "no kept samples")
        return fig
    items = data.edit_types.most_common()
    ax.bar([k for k, _ in items], [v for _, v in items], color="#1565c0")
    ax.set_ylabel("kept samples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Edit types (kept)")
    ax.tick_params(axis="x", rotation=30)
    return fig


def _hist(ax, kept: list[float], rejected: list[float], bins, xlabel: str, title: str) -> None:
    if not kept and not rejected:
        _no_data(ax)
        ax.set_title(title)
        return
    ax.hist([kept, rejected], bins=bins, stacked=True, color=[KEPT, REJECTED], label=["kept", "rejected"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.legend(frameon=False)


def _qc_scores(plt, data: ReportData):
    fig, axes = plt.subplots(1, len(QC_METRICS), figsize=(8, 2.8))
    bins = [1 + 0.25 * i for i in range(17)]
    for ax, m in zip(axes, QC_METRICS, strict=True):
        kept, rejected = data.qc[m]
        _hist(ax, kept, rejected, bins, "score (1-5)", f"QC {QC_TITLES[m]}")
    fig.tight_layout()
    return fig


def _ega(plt, data: ReportData):
    fig, ax = plt.subplots(figsize=(5, 2.8))
    kept, rejected = data.ega
    _hist(ax, kept, rejected, [i / 20 for i in range(21)], "EGA (share of changed pixels in the box)", "EGA")
    return fig


def _cost(plt, data: ReportData):
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.3 * max(len(data.costs), 3) + 1.0))
    if not data.costs:
        for ax in axes:
            _no_data(ax)
        return fig
    names = [c.stage for c in data.costs][::-1]
    panels = (
        (axes[0], [c.worker_seconds for c in data.costs][::-1], "#6a1b9a", "worker seconds (incl. setup)"),
        (axes[1], [c.gpu_seconds for c in data.costs][::-1], "#ef6c00", "GPU-seconds"),
    )
    for ax, values, color, label in panels:
        ax.barh(names, values, color=color)
        ax.set_xlabel(label)
        if not any(values):
            ax.set_xlim(0, 1)
            ax.text(0.5, 0.5, "none used", ha="center", va="center", transform=ax.transAxes, color="#666")
    axes[0].set_title("Cost per stage")
    per = data.per_kept(data.gpu_seconds)
    axes[1].set_title(f"GPU-s per kept sample: {per:.2f}" if per is not None else "GPU-s per kept sample: -")
    fig.tight_layout()
    return fig
