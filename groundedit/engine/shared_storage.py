"""Does every node see the run's storage? Checked before any work on a cluster.

Workers read ``--input`` and write ``--out`` by path, so both must be one shared filesystem mounted
at the same path on every node; a node writing to its own local disk would lose its units silently.
The driver writes a probe file with a random token under ``--out``; a task on each node reads it
back and stats one input file (:func:`check_node`); a node that cannot stops the run with one line
naming the node and the path.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def check_node(probe: str, token: str, input_file: str) -> str | None:
    """Run on one node: None when it reads the probe back and sees the input file, else what it
    could not see."""
    try:
        seen = Path(probe).read_text()
    except OSError as e:
        return f"cannot read {probe} ({e.strerror or e}), a file the driver just wrote under --out"
    if seen != token:
        return f"reads other content in {probe}: another folder is mounted at --out's path there"
    try:
        os.stat(input_file)
    except OSError as e:
        return f"cannot see the input file {input_file} ({e.strerror or e})"
    return None


def one_input_file(input_path: Path) -> Path:
    """A file under ``input_path`` (itself when it is a file): the first one a depth-first walk
    meets, so the cost does not grow with the input."""
    stack = [Path(input_path)]
    while stack:
        folder = stack.pop()
        if not folder.is_dir():
            return folder
        subfolders = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    return Path(entry.path)
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
        stack.extend(subfolders)
    return Path(input_path)


def unseen(on_every_node: Callable, probe_dir: Path, name: str, input_path: Path) -> dict[str, str]:
    """``{node: what it cannot see}`` for every node that misses ``--out`` or ``--input``
    (``on_every_node`` is the executor's); the probe ``probe_dir/.<name>.tmp-<token>`` is removed
    afterwards (a killed run's leftover is a temp file the next run clears)."""
    token = secrets.token_hex(16)
    probe = Path(probe_dir) / f".{name}.tmp-{token}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)
    try:
        results = on_every_node(check_node, str(probe), token, str(one_input_file(input_path)))
    finally:
        probe.unlink(missing_ok=True)
    return {node: why for node, why in sorted(results.items()) if why}
