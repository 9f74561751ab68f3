"""Eval results as tables: per item and per edit type + overall, written as CSV and printed.

A metric's mean is over the items where it is defined; each summary cell also says over how many
(``n_<metric>``), so "not computed" (0 items) never reads as a score of 0.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from groundedit.evaluation.scoring import METRICS, ItemResult

OVERALL = "overall"


@dataclass
class SummaryRow:
    edit_type: str
    items: int = 0
    failed: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))

    def add(self, r: ItemResult) -> None:
        self.items += 1
        self.failed += r.error is not None
        for m, v in r.values.items():
            if v is not None and not math.isnan(v):
                self.sums[m] += v
                self.counts[m] += 1

    def mean(self, metric: str) -> float | None:
        return self.sums[metric] / self.counts[metric] if self.counts[metric] else None


def summarize(results: list[ItemResult]) -> list[SummaryRow]:
    """One row per edit type (sorted), then the overall row (mean over all items, not over types)."""
    rows: dict[str, SummaryRow] = {}
    overall = SummaryRow(OVERALL)
    for r in results:
        rows.setdefault(r.edit_type, SummaryRow(r.edit_type)).add(r)
        overall.add(r)
    return [rows[k] for k in sorted(rows)] + [overall]


def _fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def write_items_csv(results: list[ItemResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "edit_type", *METRICS, "changed_pixels", "resized", "error", "notes", "judge_raw"])
        for r in results:
            w.writerow(
                [
                    r.id,
                    r.edit_type,
                    *(_fmt(r.values[m]) for m in METRICS),
                    "" if r.changed_pixels is None else r.changed_pixels,
                    int(r.resized),
                    r.error or "",
                    "; ".join(r.notes),
                    r.judge_raw or "",
                ]
            )


def write_summary_csv(rows: list[SummaryRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["edit_type", "items", "failed", *METRICS, *(f"n_{m}" for m in METRICS)])
        for row in rows:
            w.writerow(
                [
                    row.edit_type,
                    row.items,
                    row.failed,
                    *(_fmt(row.mean(m)) for m in METRICS),
                    *(row.counts[m] for m in METRICS),
                ]
            )


def summary_table(rows: list[SummaryRow]):
    """A rich table of the summary: means, with ``(k/n)`` where only k of n items have a value."""
    from rich.table import Table

    table = Table(title="groundedit eval")
    for col in ("edit type", "items", "failed", *METRICS):
        table.add_column(col, justify="left" if col == "edit type" else "right")
    for row in rows:
        cells = []
        for m in METRICS:
            k, n = row.counts[m], row.items - row.failed
            if k == 0:
                cells.append("n/c")
            else:
                digits = 2 if m in ("psnr", "clip", "es") else 3
                cells.append(f"{row.mean(m):.{digits}f}" + (f" ({k}/{n})" if k < n else ""))
        table.add_row(row.edit_type, str(row.items), str(row.failed), *cells)
    table.caption = "n/c = not computed (see samples.csv notes); (k/n) = defined for k of n scored items"
    return table
