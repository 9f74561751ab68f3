"""``groundedit report``: one static HTML page about a run — funnel, distributions, cost, gallery.

The page (``index.html``) and what it shows (``charts/*.svg``, ``thumbs/``) are written into a
fresh sibling folder and swapped in when complete, so a report folder is never half old, half new.
Everything the page needs is in that folder: it opens from disk, offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from groundedit.formats.rundata import RunData, RunDataError
from groundedit.formats.runfolder import RunFolder

MARKER = ".groundedit-report"  # says a folder is a report we wrote (and may replace)


class ReportError(ValueError):
    """The report cannot be written as asked."""


def build_report(
    out: str | Path, to: str | Path | None = None, gallery_limit: int = 500, rejected_per_reason: int = 12
) -> Path:
    """Write the report of run folder ``out`` into ``to`` (default ``<out>/report``); return the page."""
    from groundedit.report.charts import write_charts
    from groundedit.report.collect import collect
    from groundedit.report.page import render_page

    run = RunData(out)
    to = Path(to) if to is not None else RunFolder(run.out).report
    if to.exists() and (not to.is_dir() or (any(to.iterdir()) and not (to / MARKER).is_file())):
        raise ReportError(f"{to} exists and is not a groundedit report folder; choose another --to")
    if gallery_limit < 0 or rejected_per_reason < 0:
        raise ReportError("gallery and rejected-sample limits must be >= 0")
    tmp = to.with_name(f".{to.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        data = collect(run, tmp, gallery_limit, rejected_per_reason)
        charts = write_charts(data, tmp)
        (tmp / "index.html").write_text(render_page(data, charts), encoding="utf-8")
        (tmp / MARKER).write_text("")
        old = to.with_name(f".{to.name}.old-{os.getpid()}")
        if to.exists():
            os.replace(to, old)
        os.replace(tmp, to)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return to / "index.html"


__all__ = ["MARKER", "ReportError", "RunDataError", "build_report"]
