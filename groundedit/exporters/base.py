"""What every exporter shares: its summary, its error, and the rule that it writes a fresh folder."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from groundedit.formats.rundata import RunData


class ExportError(ValueError):
    """The export cannot be done as asked (the message says why)."""


@dataclass
class ExportSummary:
    """What an export wrote: rows per part (layout or split), files, and samples it skipped, by reason."""

    format: str
    to: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def fresh_folder(to: Path) -> Path:
    """Create ``to``; refuse a file or a non-empty folder (an export never mixes with old output)."""
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise ExportError(f"--to {to} exists and is not an empty folder; choose a new one")
    to.mkdir(parents=True, exist_ok=True)
    return to


def require_samples(run: RunData) -> None:
    """Refuse a run with nothing exported: there is nothing to convert."""
    if not run.shard_paths():
        raise ExportError(
            f"{run.out} has no exported samples (its export stage has not run, or kept nothing; "
            "see `groundedit status`)"
        )
