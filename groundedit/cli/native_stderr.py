"""Native code's stderr set aside, Python's stderr left on the terminal.

Ray's C++ core worker in the driver logs to a file in Ray's session folder and also copies every
ERROR-level line to file descriptor 2: a warning on every successful run (Ray Data passes its
actors' constructor arguments through the object store with ``max_restarts > 0``, which the core
worker flags once per process; the driver holds those arguments for the whole run, so the restart
it warns about cannot fail), and dozens of retry lines while a connection fails. None of that can
be switched off for the driver alone (``RAY_BACKEND_LOG_LEVEL`` would also silence the cluster
processes a local run starts), so while a Ray run is on, descriptor 2 points at a temp file and
``sys.stderr`` (progress bars, messages, tracebacks) at a copy of the original descriptor. What
was set aside can be kept (:meth:`NativeStderr.save`).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path


class NativeStderr:
    """A context: inside it, writes to descriptor 2 (C/C++ code, child processes) go to a temp
    file; Python's ``sys.stderr`` still reaches the terminal."""

    def __init__(self):
        self._file = None
        self._saved_fd: int | None = None
        self._saved_stderr = None

    def __enter__(self) -> NativeStderr:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved_fd = os.dup(2)
        self._saved_stderr = sys.stderr
        os.dup2(self._file.fileno(), 2)
        encoding = getattr(self._saved_stderr, "encoding", None) or "utf-8"
        raw = io.FileIO(self._saved_fd, "w", closefd=False)
        sys.stderr = io.TextIOWrapper(raw, encoding=encoding, errors="backslashreplace", line_buffering=True)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        sys.stderr = self._saved_stderr
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None

    def text(self) -> str:
        """What native code wrote (so far)."""
        self._file.seek(0)
        return self._file.read().decode(errors="replace")

    def save(self, path: Path) -> None:
        """Append what was set aside to ``path`` (nothing when nothing was written)."""
        text = self.text()
        if text:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(text)
