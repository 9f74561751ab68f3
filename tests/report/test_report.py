"""The HTML report, opened in headless Chromium: loads cleanly, shows every kept sample and every
rejection reason, pages its gallery, and renders a run that kept nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit.report import MARKER, ReportError, build_report

CHROMIUM = shutil.which("chromium")
# Flags for a closed network: without the networking ones, headless Chromium's connections are refused.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    "--window-size=1280,2400",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (`make install` installs it where apt-get is usable)"
)


class Page(HTMLParser):
    """What the tests read from the page's DOM."""

    def __init__(self, html: str):
        super().__init__()
        self.body: dict[str, str] = {}
        self.kept: list[str] = []
        self.rejected: list[str] = []
        self.reasons: set[str] = set()
        self.images: list[str] = []
        self._in_reason = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        if "sample" in classes:
            (self.kept if "kept" in classes else self.rejected).append(a["data-key"])
        if tag == "img":
            self.images.append(a["src"])
        self._in_reason = "reason" in classes

    def handle_data(self, data):
        if self._in_reason and data.strip():
            self.reasons.add(data.strip())
        self._in_reason = False


def open_in_chromium(page: Path, screenshot: Path) -> Page:
    """Load ``page`` in headless Chromium; return its DOM after the load event, write a screenshot."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={screenshot}",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Page(proc.stdout)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "report"
    return build_report(tiny_run, folder, gallery_limit=500)


@pytest.mark.slow
@needs_chromium
def test_report_loads_cleanly_with_every_sample_and_reason(report, tiny_run, shard_reader, tmp_path):
    shot = tmp_path / "report.png"
    dom = open_in_chromium(report, shot)
    assert dom.body.get("data-ready") == "1", "the page's scripts ran to the load event"
    assert json.loads(dom.body["data-errors"]) == [], "no script error, no resource failed to load"
    kept = set(shard_reader(tiny_run))
    assert kept and set(dom.kept) == kept, "the gallery holds every exported sample"
    rejected = pq.read_table(tiny_run / "rejected.parquet").to_pylist()
    assert rejected and {r["reason"] for r in rejected} <= dom.reasons
    assert {r["key"] for r in rejected} == set(dom.rejected), "12 per reason covers this run"
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, "the screenshot shows a page, not a blank"
    # hidden gallery pages load lazily in a browser, so check every referenced file exists here
    assert dom.images and all((report.parent / src).is_file() for src in dom.images)


@pytest.mark.slow
@needs_chromium
def test_a_missing_thumbnail_is_reported_by_the_page(report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    first = next(p for p in Page((copy / "index.html").read_text()).images if p.startswith("thumbs/kept"))
    (copy / first).unlink()
    dom = open_in_chromium(copy / "index.html", tmp_path / "shot.png")
    errors = json.loads(dom.body["data-errors"])
    assert any(first in e for e in errors), errors


@pytest.mark.slow
def test_gallery_limit_and_pages(tiny_run, tmp_path):
    page = build_report(tiny_run, tmp_path / "r", gallery_limit=1, rejected_per_reason=0)
    dom = Page(page.read_text())
    assert len(dom.kept) == 1 and dom.rejected == []
    assert "Gallery (1 of" in page.read_text()
    again = build_report(tiny_run, tmp_path / "r", gallery_limit=2)  # a report folder is replaced
    assert len(Page(again.read_text()).kept) == 2 and (tmp_path / "r" / MARKER).is_file()


@pytest.fixture(scope="module")
def zero_kept_run(tmp_path_factory, run_pipeline):
    """A run that kept nothing: plain photos (no SA-1B masks) through the model-free chain, so
    select finds no candidate for any of them."""
    import numpy as np

    from groundedit.specs import stages_dir

    d = tmp_path_factory.mktemp("plain-photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(d / f"photo-{i}.jpg")
    specs = tmp_path_factory.mktemp("zero-specs") / "stages"
    shutil.copytree(stages_dir(), specs)
    (specs / "pipeline.yaml").write_text("order: [ingest, select, render, export]\n")
    out = tmp_path_factory.mktemp("zero-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
        run_pipeline(d, out)
    return out


@needs_chromium
def test_a_run_that_kept_nothing_still_renders(zero_kept_run, tmp_path):
    page = build_report(zero_kept_run)
    assert page == zero_kept_run / "report" / "index.html"
    dom = open_in_chromium(page, tmp_path / "zero.png")
    assert dom.body.get("data-ready") == "1" and json.loads(dom.body["data-errors"]) == []
    assert dom.kept == [] and "gallery-empty" in page.read_text()
    assert "no_eligible_target" in dom.reasons and len(dom.rejected) == 3
    assert (tmp_path / "zero.png").stat().st_size > 0


def test_report_refuses_a_folder_it_did_not_write(zero_kept_run, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not a groundedit report folder"):
        build_report(zero_kept_run, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_the_cost_section_counts_units_per_node(report, tiny_run):
    import re
    import socket

    from groundedit.manifest import StageSummary

    html = report.read_text()
    table = html[html.index('<table id="node-table">') :]
    table = table[: table.index("</table>")]
    stages = re.findall(r"<th>([a-z]+)</th>", table)[1:]
    assert stages == [s for s in stages if StageSummary.load(tiny_run, s)] and "ingest" in stages
    (row,) = re.findall(rf"<tr><td>{re.escape(socket.gethostname())}</td>(.*?)</tr>", table, re.S)
    counts = [int(n) for n in re.findall(r'<td class="n">(\d+)</td>', row)]
    assert counts == [StageSummary.load(tiny_run, s).units_done for s in stages]
