"""One writer per run folder: ``<out>/manifests/run.lock``, held with ``flock`` for a whole run.

Two drivers on one folder would clobber each other's temp files and manifests, so the second one
stops with one line naming the holder. The kernel drops an ``flock`` when its process dies (kill -9
included), so a lock left by a killed run never blocks: the next run takes it over and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from groundedit.formats.runfolder import RunFolder


class RunLocked(RuntimeError):
    """Another live run holds the folder."""


def lock_path(out: Path) -> Path:
    return RunFolder(out).lock


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "unknown process"


@contextlib.contextmanager
def run_lock(out: Path, on_takeover=None) -> Iterator[None]:
    """Hold ``out``'s run lock for the duration; raise :class:`RunLocked` if a live run has it.

    ``on_takeover(description)`` is called when the lock file names a run that is gone.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            raise RunLocked(
                f"{out} is in use by another groundedit run ({holder}); wait for it to finish or stop it"
            ) from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous and on_takeover is not None:
            on_takeover(_holder(previous))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves nothing to take over
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
