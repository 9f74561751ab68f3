"""Running one unit of one stage: read its input, process batches, write outputs atomically.

This is the only code that writes a unit's data files, and both executors call it (in-process or in
a Ray actor, through :mod:`groundedit.engine.worker`), so crash safety and error isolation are the same
everywhere:
- outputs go to temp names and are renamed into place (artifacts first, then rejected, then kept
  samples); the unit's commit is written only after :func:`run_unit` returns;
- a batch that raises is rolled back (the artifacts it packed are dropped) and retried sample by
  sample, so one bad sample is rejected with the exception as its reason instead of failing the
  unit, and no member is packed twice;
- bytes that changed under the run (:class:`~groundedit.formats.tar.BlobChanged`) fail the unit: they
  are never turned into a per-sample rejection.

Each commit also says what the unit cost: wall seconds, the worker's setup (model loading) charged
to the first unit it ran, the device its models ran on, and GPU-seconds (wall x GPUs the worker
held) when that was a GPU — so cost per kept sample comes from the commits alone.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from groundedit.faults import crash_point
from groundedit.formats.commits import UnitCommit
from groundedit.formats.manifest import digest
from groundedit.formats.runfolder import unit_files
from groundedit.formats.storage import read_rows, write_rejected, write_rows
from groundedit.formats.tar import ArtifactPack, BlobChanged
from groundedit.image.codec import SampleError
from groundedit.records import Sample, SourceEntry
from groundedit.stages.base import SinkStage, SourceStage, Stage, UnitIO

# A unit whose samples mostly fail with *unexpected* exceptions points at a bug, not at bad data:
# fail the unit (it is retried, then quarantined) instead of rejecting everything.
MAX_UNEXPECTED_ERROR_RATE = 0.5


class StageFailed(RuntimeError):
    """Most samples of a unit raised unexpected exceptions: a bug or a broken model, not bad input."""


@dataclass
class Unit:
    """A unit of work: a slice of the input that one worker processes and commits as a whole."""

    id: str
    fingerprint: str
    rows: int
    input_file: Path | None = None
    entries: list[SourceEntry] = field(default_factory=list)


def _error_reason(e: Exception) -> tuple[str, str]:
    if isinstance(e, SampleError):
        return e.reason, e.detail
    tb = traceback.format_exception_only(type(e), e)[-1].strip()
    return "stage_exception", tb


def _process(stage: Stage | SourceStage, batch: list, io: UnitIO) -> list[Sample]:
    mark = io.artifacts.mark()
    try:
        out = stage.process_batch(batch, io)
    except BlobChanged:
        raise
    except Exception as e:
        io.artifacts.rollback(mark)  # what the failed batch packed goes; the retry packs it again
        if len(batch) == 1:
            return [_reject_unprocessable(stage, batch[0], *_error_reason(e))]
        # Isolate the culprit: the rest of the batch still goes through.
        return [s for item in batch for s in _process(stage, [item], io)]
    if len(out) != len(batch):
        raise RuntimeError(f"{stage.name}.process_batch returned {len(out)} results for {len(batch)} inputs")
    return out


def _reject_unprocessable(stage, item, reason: str, detail: str) -> Sample:
    if isinstance(item, Sample):
        return item.reject(stage.name, reason, detail)
    return stage.reject_entry(item, reason, detail)


def setup_stage(stage: Stage | SourceStage | SinkStage) -> None:
    """``stage.setup()``, timed: the first unit the stage then runs is charged with it."""
    start = time.perf_counter()
    stage.setup()
    stage.unbilled_setup_seconds = time.perf_counter() - start


def _device(stage: Stage | SourceStage | SinkStage) -> str:
    """'cuda' when the stage has models and this process can use CUDA (model code then picks it);
    torch is only looked up if a stage already imported it, never imported here."""
    torch = sys.modules.get("torch")
    if stage.spec.models and torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _costs(stage: Stage | SourceStage | SinkStage, start: float) -> dict:
    """The cost fields of a unit's commit: its wall time since ``start``, plus the setup seconds
    not yet charged to any unit."""
    seconds = time.perf_counter() - start
    setup_seconds, stage.unbilled_setup_seconds = stage.unbilled_setup_seconds, 0.0
    device = _device(stage)
    gpus = (stage.spec.resources.gpus or 1.0) if device == "cuda" else 0.0
    return {
        "seconds": round(seconds, 3),
        "setup_seconds": round(setup_seconds, 3),
        "device": device,
        "gpu_seconds": round((seconds + setup_seconds) * gpus, 3) if gpus else None,
    }


def run_unit(stage: Stage | SourceStage, unit: Unit, chain_hash: str) -> UnitCommit:
    """Process ``unit`` with a set-up ``stage`` and write its files; return its commit (for the
    caller to write once everything is in place)."""
    start = time.perf_counter()
    out = stage.config.out
    paths = unit_files(stage.name, unit.id)
    rows = unit.entries if isinstance(stage, SourceStage) else read_rows(unit.input_file, Sample)
    io = UnitIO(unit=unit.id, out=out, artifacts=ArtifactPack(out, paths.artifacts))
    kept: list[Sample] = []
    rejected: list[Sample] = []
    try:
        bs = stage.spec.batch_size
        for i in range(0, len(rows), bs):
            for s in _process(stage, rows[i : i + bs], io):
                (rejected if s.rejection else kept).append(s)
        unexpected = [s for s in rejected if s.rejection.reason == "stage_exception"]
        if len(unexpected) >= 2 and len(unexpected) > MAX_UNEXPECTED_ERROR_RATE * len(rows):
            raise StageFailed(
                f"stage '{stage.name}' failed on {len(unexpected)} of {len(rows)} samples of unit "
                f"{unit.id}; first ({unexpected[0].key}): {unexpected[0].rejection.detail}"
            )
        io.artifacts.commit()
    except BaseException:
        io.artifacts.abort()
        raise
    crash_point(f"{stage.name}:artifacts-committed")
    rejected_digest = write_rejected(rejected, out / paths.rejected_file)
    kept_digest = write_rows(kept, out / paths.file)
    crash_point(f"{stage.name}:unit-written")
    has_artifacts = io.artifacts.committed
    if not has_artifacts:  # a previous attempt at this unit may have left one
        (out / paths.artifacts).unlink(missing_ok=True)
    return UnitCommit(
        stage=stage.name,
        unit=unit.id,
        chain_hash=chain_hash,
        input_fingerprint=unit.fingerprint,
        output_fingerprint=digest(kept_digest, rejected_digest),
        file=paths.file,
        rejected_file=paths.rejected_file,
        artifacts=paths.artifacts if has_artifacts else None,
        rows_in=len(rows),
        kept=len(kept),
        rejected=dict(Counter(s.rejection.reason for s in rejected)),
        **_costs(stage, start),
    )


def run_sink_unit(stage: SinkStage, unit: Unit, chain_hash: str, rejected_parts: list) -> UnitCommit:
    """Write the part of the final output that ``unit`` contributes (its kept samples) with a
    set-up sink ``stage``; ``rejected_parts`` lists every stage's rejected rows for the unit, which
    the driver combines into the rejected sidecar."""
    start = time.perf_counter()
    samples = read_rows(unit.input_file, Sample)
    part = unit_files(stage.name, unit.id).artifacts
    spans, part_digest = stage.write_part(samples, stage.config.out / part)
    crash_point(f"{stage.name}:part-written")
    return UnitCommit(
        stage=stage.name,
        unit=unit.id,
        chain_hash=chain_hash,
        input_fingerprint=unit.fingerprint,
        # the input fingerprint covers every stage's output for the unit, rejected rows included
        output_fingerprint=digest(part_digest, unit.fingerprint),
        artifacts=part if spans else None,
        rows_in=len(samples),
        kept=len(spans),
        **_costs(stage, start),
        part_samples=spans,
        rejected_parts=rejected_parts,
    )
