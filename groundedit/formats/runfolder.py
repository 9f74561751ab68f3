"""Every path inside a run folder (``--out``), said once.

```
<out>/manifests/run.json              the run's settings
<out>/manifests/run.lock              one driver at a time
<out>/manifests/<stage>.json          each stage's summary
<out>/manifests/plan/                 the planned units (Parquet parts + plan.json)
<out>/manifests/listings/             input tars' member tables and units, kept between plannings
<out>/commits/<stage>/<unit>.json     per-unit commits (and <unit>.failed.json)
<out>/data/<stage>/<unit>.*           each stage's rows, rejected rows and images of a unit
<out>/shards/                         the WebDataset shards and their .stats.json
<out>/rejected.parquet/               every rejected sample (a Parquet dataset folder)
<out>/report/  <out>/eval/  <out>/logs/
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
        return self.manifests / "run.json"

    @property
    def lock(self) -> Path:
        return self.manifests / "run.lock"

    @property
    def plan(self) -> Path:
        return self.manifests / "plan"

    @property
    def listings(self) -> Path:
        return self.manifests / "listings"

    def summary(self, stage: str) -> Path:
        return self.manifests / f"{stage}.json"

    @property
    def commits(self) -> Path:
        return self.root / COMMITS

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


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a groundedit run folder: it has a ``run.json``, or a run has taken its lock
    (a run's first moments, before it writes ``run.json``)."""
    folder = RunFolder(path)
    return folder.run_json.is_file() or folder.lock.is_file()
