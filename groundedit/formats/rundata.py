"""Reading a run folder: the one place the report, the exporters and ``eval`` learn what a run holds.

- :meth:`RunData.stages` — each stage's saved :class:`~groundedit.formats.manifest.StageSummary` (the
  one summary type the driver returns and saves): units, samples in / kept / rejected by reason, what
  it cost (worker wall seconds, setup, GPU-seconds, devices) and where units were done.
- :meth:`RunData.samples` — the exported samples, streamed from the shards in order: the strict
  record and, where asked, the members' bytes.
- :meth:`RunData.rejected` — every dropped sample with its stage, reason, detail, raw model text
  and the record it had when dropped; :meth:`RunData.rejected_image` reads its images if they
  still exist.

Nothing here writes, and nothing outside this module reads manifests or shards for these readers,
so the run folder's layout can change behind it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from groundedit.formats.commits import CommitStore
from groundedit.formats.manifest import StageSummary
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import RunFolder
from groundedit.formats.shards import read_shard_stats
from groundedit.formats.storage import REJECTED_SCHEMA
from groundedit.formats.tar import read_blob
from groundedit.records import ExportRecord, Sample
from groundedit.specs import SpecError, load_pipeline

EXPORT_STAGE = "export"


class RunDataError(ValueError):
    """The folder is not a run folder, or a file in it cannot be read."""


@dataclass(frozen=True)
class KeptSample:
    """An exported sample: its record and (when read) its members' bytes, e.g. ``src.jpg``."""

    key: str
    record: ExportRecord
    shard: str
    members: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectedSample:
    key: str
    stage: str
    reason: str
    detail: str
    raw: str | None
    sample: Sample


class RunData:
    """A run folder (``--out`` of ``groundedit run``), read-only."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.config = RunConfig.load(self.out) if self.out.is_dir() else None
        if self.config is None:
            raise RunDataError(f"{self.out} is not a run folder (no manifests/run.json)")

    # --- manifests -----------------------------------------------------------------------------

    def stage_names(self) -> list[str]:
        """Stages with a manifest, in pipeline order (stages the current spec does not list last)."""
        present = sorted(p.stem for p in RunFolder(self.out).summaries())
        try:
            order = load_pipeline(recipe=self.config.recipe)
        except SpecError:
            order = []
        return [s for s in order if s in present] + [s for s in present if s not in order]

    def stages(self) -> list[StageSummary]:
        """Every stage's summary as the driver saved it, in pipeline order; the export sink's ``kept``
        is the samples in its shards."""
        out = []
        for name in self.stage_names():
            try:
                out.append(StageSummary.model_validate_json(StageSummary.path(self.out, name).read_text()))
            except (OSError, ValueError) as e:
                raise RunDataError(f"manifests/{name}.json is unreadable: {e}") from e
        return out

    def shard_paths(self) -> list[Path]:
        """The finished shards (those with a stats record), in order."""
        return [RunFolder(self.out).shards / s.shard for s in read_shard_stats(self.out)]

    # --- kept samples --------------------------------------------------------------------------

    def samples(self, members: bool | int = True) -> Iterator[KeptSample]:
        """The exported samples in shard order. ``members``: read every sample's member bytes
        (True), none (False), or only those of the first N samples (an int)."""
        n = 0
        for shard in self.shard_paths():
            try:
                with tarfile.open(shard) as tar:
                    key, record, data = None, None, {}
                    for info in tar:
                        k, _, member = info.name.partition(".")
                        if k != key:
                            if key is not None:
                                yield self._kept(key, record, shard, data)
                                n += 1
                            key, record, data = k, None, {}
                        want = members is True or (members is not False and n < members)
                        if member == "json":
                            record = ExportRecord.model_validate_json(tar.extractfile(info).read())
                        elif want:
                            data[member] = tar.extractfile(info).read()
                    if key is not None:
                        yield self._kept(key, record, shard, data)
                        n += 1
            except (OSError, tarfile.TarError, ValueError) as e:
                raise RunDataError(f"shard {shard.name} is unreadable: {e}") from e

    @staticmethod
    def _kept(key: str, record: ExportRecord | None, shard: Path, data: dict) -> KeptSample:
        if record is None:
            raise RunDataError(f"sample {key} in {shard.name} has no json member")
        return KeptSample(key, record, shard.name, data)

    # --- rejected samples ----------------------------------------------------------------------

    def rejected_files(self) -> list[Path]:
        """The files of ``rejected.parquet/`` once export has combined them; before that, every
        committed unit's rejected file (the same rows)."""
        sidecar = RunFolder(self.out).rejected
        if sidecar.is_dir():
            return sorted(sidecar.glob("*.parquet"))
        commits = CommitStore(self.out)
        files = []
        for name in self.stage_names():
            if name == EXPORT_STAGE:
                continue
            for unit in sorted(set(commits.units(name))):
                c = commits.read(name, unit)
                if c is not None and c.rejected_file and sum(c.rejected.values()):
                    files.append(self.out / c.rejected_file)
        return files

    def rejected(self, want: Callable[[str, str], bool] | None = None) -> Iterator[RejectedSample]:
        """Every rejected sample, in stage then unit order. ``want(stage, reason)`` is asked before a
        row's record is parsed; rows it declines cost almost nothing (runs hold millions)."""
        for path in self.rejected_files():
            try:
                pf = pq.ParquetFile(path)
                for batch in pf.iter_batches(batch_size=1024, columns=REJECTED_SCHEMA.names):
                    stages = batch.column("stage").to_pylist()
                    reasons = batch.column("reason").to_pylist()
                    for i, (stage, reason) in enumerate(zip(stages, reasons, strict=True)):
                        if want is not None and not want(stage, reason):
                            continue
                        yield RejectedSample(
                            key=batch.column("key")[i].as_py(),
                            stage=stage,
                            reason=reason,
                            detail=batch.column("detail")[i].as_py() or "",
                            raw=batch.column("raw")[i].as_py(),
                            sample=Sample.model_validate_json(batch.column("record")[i].as_py()),
                        )
            except (OSError, ValueError) as e:
                raise RunDataError(f"{path.relative_to(self.out)} is unreadable: {e}") from e

    def rejected_image(self, r: RejectedSample, name: str) -> bytes | None:
        """Bytes of ``name`` for a rejected sample: an artifact a stage wrote (``src.jpg``,
        ``grounded.jpg``, ``edited.jpg``) or ``source`` (the input photo); None when it was never
        made or its file is gone."""
        ref = r.sample.source.image if name == "source" else r.sample.artifacts.get(name)
        if ref is None:
            return None
        try:
            return read_blob(ref, self.out)
        except OSError:
            return None
