"""The report page: one static HTML file rendered from a Jinja2 template (no server, no CDN)."""

from __future__ import annotations

from pathlib import Path

from groundedit.records import format_score
from groundedit.report.collect import ReportData

PAGE_SIZE = 24  # gallery samples per page
TEMPLATES = Path(__file__).parent / "templates"


def _fmt(v: float | None) -> str:
    """Seconds per kept sample (a cost; scores go through ``format_score``)."""
    return "-" if v is None else f"{v:.2f}"


def render_page(data: ReportData, charts: dict[str, str]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(
        d=data, charts=charts, fmt=_fmt, score=format_score, page_size=PAGE_SIZE
    )
