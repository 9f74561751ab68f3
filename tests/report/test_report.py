"""The HTML report, opened in headless Chromium: loads cleanly, shows every kept sample and every
rejection reason, pages its gallery, and renders a run that kept nothing."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from groundedit.formats.manifest import StageSummary
from groundedit.report import MARKER, ReportError, build_report
from groundedit.report.charts import write_charts
from groundedit.report.collect import QC_METRICS, ReportData

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


def chromium_dom(page: Path, *flags: str) -> str:
    """Load ``page`` in headless Chromium; its DOM (HTML) after the load event."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                *flags,
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def open_in_chromium(page: Path, screenshot: Path) -> Page:
    """Load ``page`` in headless Chromium; return its DOM after the load event, write a screenshot."""
    return Page(chromium_dom(page, f"--screenshot={screenshot}"))


# Inlined after a chart's SVG: on load, the box of every element whose id starts with "funnel-" as
# Chromium laid it out, into the body's data-boxes (read back from --dump-dom).
_BOXES_SCRIPT = """<script>
window.addEventListener("load", function () {
  var boxes = {};
  document.querySelectorAll("svg [id^='funnel-']").forEach(function (el) {
    var r = el.getBoundingClientRect();
    boxes[el.id] = [r.left, r.top, r.right, r.bottom];
  });
  document.body.dataset.boxes = JSON.stringify(boxes);
});
</script>"""


def funnel_boxes(svg: Path, tmp_path: Path) -> dict[str, list[float]]:
    """The funnel chart's bars, counts and legend as boxes on a page (Chromium's layout of the SVG)."""
    markup = svg.read_text()
    page = tmp_path / "funnel-boxes.html"
    page.write_text(
        f"<!DOCTYPE html><html><body>{markup[markup.index('<svg') :]}{_BOXES_SCRIPT}</body></html>"
    )
    body = re.search(r"<body[^>]*data-boxes=\"([^\"]*)\"", chromium_dom(page))
    assert body, "the box script ran"
    return json.loads(html.unescape(body.group(1)))


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_legend_covers_nothing(boxes: dict[str, list[float]]) -> None:
    legend = boxes.pop("funnel-legend")
    assert legend[2] > legend[0] and legend[3] > legend[1], "the legend is drawn"
    bars = {k: v for k, v in boxes.items() if k.startswith("funnel-bar-")}
    counts = {k: v for k, v in boxes.items() if k.startswith("funnel-count-")}
    assert bars and counts and len(bars) == 2 * len(counts), sorted(boxes)
    covered = [k for k, box in boxes.items() if _overlap(legend, box)]
    assert not covered, f"the legend {legend} covers {covered}"


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


@pytest.fixture(scope="module")
def odd_names_report(odd_names_run, tmp_path_factory):
    return build_report(odd_names_run, tmp_path_factory.mktemp("odd-report") / "report")


@pytest.mark.slow
def test_unicode_and_hashed_keys_get_a_thumbnail_each(odd_names_report, odd_names_run, shard_reader):
    keys = set(shard_reader(odd_names_run))
    assert any(not k.isascii() for k in keys) and any("~" in k for k in keys)
    kept = [src for src in Page(odd_names_report.read_text()).images if src.startswith("thumbs/kept/")]
    assert {src.removeprefix("thumbs/kept/").split(".")[0] for src in kept} == keys
    assert len(set(kept)) == len(kept), "no two samples share a thumbnail file"
    assert all((odd_names_report.parent / src).is_file() for src in kept)


@pytest.mark.slow
@needs_chromium
def test_thumbnails_of_unicode_and_hashed_keys_load(odd_names_report, odd_names_run, shard_reader, tmp_path):
    dom = open_in_chromium(odd_names_report, tmp_path / "shot.png")
    assert json.loads(dom.body["data-errors"]) == [], "every thumbnail loaded"
    assert set(dom.kept) == set(shard_reader(odd_names_run))


@pytest.mark.slow
def test_gallery_limit_and_pages(tiny_run, tmp_path):
    page = build_report(tiny_run, tmp_path / "r", gallery_limit=1, rejected_per_reason=0)
    dom = Page(page.read_text())
    assert len(dom.kept) == 1 and dom.rejected == []
    assert "Gallery (1 of" in page.read_text()
    again = build_report(tiny_run, tmp_path / "r", gallery_limit=2)  # a report folder is replaced
    assert len(Page(again.read_text()).kept) == 2 and (tmp_path / "r" / MARKER).is_file()


@pytest.fixture(scope="module")
def zero_kept_run(tmp_path_factory, run_pipeline, spine_stages):
    """A run that kept nothing: plain photos (no SA-1B masks) through the model-free spine, so
    select finds no candidate for any of them."""
    import numpy as np

    d = tmp_path_factory.mktemp("plain-photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(d / f"photo-{i}.jpg")
    out = tmp_path_factory.mktemp("zero-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
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


STAGES = [
    "ingest",
    "tag",
    "ground",
    "select",
    "saliency",
    "render",
    "instruct",
    "rewrite",
    "edit",
    "qc",
    "export",
]


def funnel_data(inputs: int) -> ReportData:
    """A funnel whose first stages keep every input (bars the full width, the worst case for a legend
    inside the axes) and whose last ones drop some."""
    kept = [inputs] * 6 + [inputs * 3 // 4] * 3 + [inputs // 2] * 2
    stages = [
        StageSummary(
            stage=name,
            spec_hash="",
            chain_hash="",
            complete=True,
            units_done=4,
            units_planned=4,
            rows_in=inputs,
            kept=k,
            rejected={"dropped": inputs - k} if k < inputs else {},
        )
        for name, k in zip(STAGES, kept, strict=True)
    ]
    return ReportData(
        out="runs/x",
        generated="",
        version="",
        info={},
        stages=stages,
        inputs=inputs,
        kept=kept[-1],
        edit_types=Counter(),
        qc={m: ([], []) for m in QC_METRICS},
        ega=([], []),
        costs=[],
        nodes=[],
        gallery=[],
        rejected={},
        gallery_limit=0,
        rejected_per_reason=0,
    )


@needs_chromium
@pytest.mark.parametrize("inputs", [12, 11_000_000])
def test_funnel_legend_covers_no_bar_and_no_count(inputs, tmp_path):
    """Measured in Chromium from the SVG's element boxes: the legend overlaps no bar and no count, with
    short and with SA-1B-sized counts."""
    charts = write_charts(funnel_data(inputs), tmp_path)
    assert_legend_covers_nothing(funnel_boxes(tmp_path / charts["funnel"], tmp_path))


def _funnel_rows(page: Path) -> dict[str, tuple[str, str]]:
    """stage -> (state, units) from the report's funnel table."""
    table = page.read_text().split('id="funnel-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td class=\"n units\">([^<]+)</td>", table)
    return {stage: (state, units) for stage, state, units in rows}


def assert_units_as_status_counts(page: Path, run: Path, stages: Path) -> None:
    """``stages``: the spec folder the run was made with (status judges commits against it)."""
    from groundedit.engine.chain import StageChain
    from groundedit.engine.status import run_status
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig.load(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(stages))
        status = {st.stage: st for st in run_status(StageChain(config))}
    assert all(st.state == "done" for st in status.values()), "a finished run, judged by its own specs"
    rows = _funnel_rows(page)
    assert rows and set(rows) <= set(status)
    for stage, (_, units) in rows.items():
        assert units == f"{status[stage].units_done}/{status[stage].units_planned}", (stage, units)
    shards = len(list((run / "shards").glob("*.tar")))
    note = f"{shards} shard{'' if shards == 1 else 's'}"
    assert rows["export"][0] == f"done ({note})" and status["export"].detail == note, (
        "shards beside the units"
    )


def test_report_counts_units_as_status_does(zero_kept_run, spine_stages, tmp_path):
    page = build_report(zero_kept_run, tmp_path / "r")
    assert_units_as_status_counts(page, zero_kept_run, spine_stages)


SCORE = re.compile(r"^(\d+\.\d{3}|-)$")


@pytest.mark.slow
def test_report_units_and_one_score_format(report, tiny_run, enforcing_stages):
    """The export row counts units as `groundedit status` does (not shards), and every score on the
    page, kept or rejected, in a gallery line or in a rejection's detail, has three decimals."""
    assert_units_as_status_counts(report, tiny_run, enforcing_stages)
    text = report.read_text()
    scores = re.findall(r'<span class="score">(\w+) ([^<]+)</span>', text)
    names = {name for name, _ in scores}
    assert {"ega", "region_edit_accuracy", "seamless_quality", "change_outside"} <= names, names
    for name, value in scores:
        assert (value in ("0", "1")) if name == "saliency_keep" else SCORE.match(value), (name, value)
    details = [
        html.unescape(d)
        for d in re.findall(
            r'data-key="[^"]*">\s*<div><span class="key">[^<]*</span> '
            r'<span class="meta">([^<]*)</span>',
            text,
        )
    ]
    numbers = [
        n for d in details if d.startswith(("EGA", "RegionEditAccuracy")) for n in re.findall(r"\d[\d.]*", d)
    ]
    assert numbers, "the run has edit or QC rejections with their scores in the detail"
    assert all(SCORE.match(n) for n in numbers), numbers


@pytest.mark.slow
@needs_chromium
def test_the_runs_funnel_legend_covers_nothing(report, tmp_path):
    assert_legend_covers_nothing(funnel_boxes(report.parent / "charts" / "funnel.svg", tmp_path))


def test_the_cost_section_counts_units_per_node(report, tiny_run):
    import re
    import socket

    from groundedit.formats.manifest import StageSummary

    html = report.read_text()
    table = html[html.index('<table id="node-table">') :]
    table = table[: table.index("</table>")]
    stages = re.findall(r"<th>([a-z]+)</th>", table)[1:]
    assert stages == [s for s in stages if StageSummary.load(tiny_run, s)] and "ingest" in stages
    (row,) = re.findall(rf"<tr><td>{re.escape(socket.gethostname())}</td>(.*?)</tr>", table, re.S)
    counts = [int(n) for n in re.findall(r'<td class="n">(\d+)</td>', row)]
    assert counts == [StageSummary.load(tiny_run, s).units_done for s in stages]
