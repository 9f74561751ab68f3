"""Every path inside a run folder (``--out``), said once.

```
<out>/manifests/run.json              the run's settings
<out>/manifests/run.lock              one driver at a time
<out>/manifests/<stage>.json          each stage's summary
<out>/manifests/plan/                 the planned units (Parquet parts + plan.json)
<out>/manifests/listings/             input tars' member tables and units, kept between plannings
<out>/commits/<stage>/<unit>.json     per-unit commits (and <unit>.failed.json)
<out>/data/<stage>/<unit>.parquet     a stage's kept rows of a unit (.rejected.parquet: its rejected
                                      rows, .tar: the images it made; the sink: the unit's part)
<out>/shards/                         the WebDataset shards and their .stats.json (formats.shards)
<out>/rejected.parquet/               every rejected sample (a Parquet dataset folder)
<out>/report/  <out>/eval/  <out>/logs/ray-driver.log
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFESTS = "manifests"
COMMITS = "commits"
DATA = "data"
SHARDS = "shards"
REJECTED = "rejected.parquet"  # a Parquet dataset folder: any Parquet reader takes it as one table
REPORT = "report"
EVAL = "eval"
LOGS = "logs"
RUN_JSON = "run.json"
LOCK = "run.lock"
PLAN = "plan"
PLAN_INFO = "plan.json"  # the plan's totals, written last: a plan folder without it is unfinished
PLAN_PART, PLAN_PARTS = "part-{:06d}.parquet", "part-*.parquet"  # the planned units, in plan order
COMMIT = ".json"
FAILURE = ".failed.json"
KEPT, REJECTED_ROWS, ARTIFACTS = ".parquet", ".rejected.parquet", ".tar"


@dataclass(frozen=True)
class UnitFiles:
    """Where a stage keeps one unit's output, relative to the run folder (as commits record it)."""

    file: str  # kept samples (Parquet)
    rejected_file: str  # rejected samples (Parquet)
    artifacts: str  # images the stage made (tar); the sink's part of the output

    def all(self) -> tuple[str, str, str]:
        return self.file, self.rejected_file, self.artifacts


def unit_files(stage: str, unit: str) -> UnitFiles:
    base = f"{DATA}/{stage}/{unit}"
    return UnitFiles(f"{base}{KEPT}", f"{base}{REJECTED_ROWS}", f"{base}{ARTIFACTS}")


def unit_of(filename: str) -> str | None:
    """The unit a file of ``data/<stage>/`` belongs to (None: a temp file, or not a unit's)."""
    if filename.startswith("."):
        return None
    for suffix in (REJECTED_ROWS, KEPT, ARTIFACTS):  # the longest first
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return None


def producer_of(relpath: str | Path) -> str | None:
    """The stage whose ``data/<stage>/`` folder holds ``relpath`` (relative to the run folder)."""
    parts = Path(relpath).parts
    return parts[1] if len(parts) >= 3 and parts[0] == DATA else None


@dataclass(frozen=True)
class RunFolder:
    """The paths of the run folder at ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifests(self) -> Path:
        return self.root / MANIFESTS

    @property
    def run_json(self) -> Path:
        return self.manifests / RUN_JSON

    @property
    def lock(self) -> Path:
        return self.manifests / LOCK

    @property
    def plan(self) -> Path:
        return self.manifests / PLAN

    @property
    def plan_info(self) -> Path:
        return self.plan / PLAN_INFO

    @property
    def listings(self) -> Path:
        return self.manifests / "listings"

    def summary(self, stage: str) -> Path:
        return self.manifests / f"{stage}.json"

    def summaries(self) -> list[Path]:
        """The stage summaries present, in no particular order."""
        return [p for p in self.manifests.glob("*.json") if p.name != RUN_JSON]

    @property
    def commits(self) -> Path:
        return self.root / COMMITS

    def commit_dir(self, stage: str) -> Path:
        return self.commits / stage

    def commit(self, stage: str, unit: str) -> Path:
        return self.commit_dir(stage) / f"{unit}{COMMIT}"

    def failure(self, stage: str, unit: str) -> Path:
        return self.commit_dir(stage) / f"{unit}{FAILURE}"

    def data(self, stage: str) -> Path:
        return self.root / DATA / stage

    @property
    def shards(self) -> Path:
        return self.root / SHARDS

    @property
    def rejected(self) -> Path:
        return self.root / REJECTED

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def eval(self) -> Path:
        return self.root / EVAL

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def driver_log(self) -> Path:
        """What Ray's native code printed during runs (:mod:`groundedit.cli.native_stderr`)."""
        return self.logs / "ray-driver.log"


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a groundedit run folder: it has a ``run.json``, or a run has taken its lock
    (a run's first moments, before it writes ``run.json``)."""
    folder = RunFolder(path)
    return folder.run_json.is_file() or folder.lock.is_file()
