"""``metrics.jsonl`` (one JSON line per logged step) and, when TensorBoard is installed, its event files.

On resume, lines of steps after the checkpoint (written before a crash) are dropped first, so the file
reads as if the run had never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from groundedit.formats.manifest import atomic_write_bytes

METRICS_FILE = "metrics.jsonl"


def read_metrics(out: Path) -> list[dict]:
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Logbook:
    def __init__(self, out: Path, resume_after: int = 0) -> None:
        self.path = Path(out) / METRICS_FILE
        kept = [r for r in read_metrics(out) if r["step"] <= resume_after]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self.file = open(self.path, "a")  # noqa: SIM115 (kept open for the whole run)
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_after + 1)
        except ImportError:  # TensorBoard is optional
            pass

    def write(self, record) -> None:
        row = record.to_json()
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"train/{key}", value, record.step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
