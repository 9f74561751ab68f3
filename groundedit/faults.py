"""Named crash points for kill-and-resume tests.

``GROUNDEDIT_CRASH_AT=<point>[@<n>]`` makes the process SIGKILL itself (and its process group,
when it leads one) the ``n``-th time it reaches ``<point>`` (default: the first). Unset, a crash
point costs one dictionary lookup. ``GROUNDEDIT_CRASH_SIGNAL=INT`` sends SIGINT instead (what a
terminal's Ctrl-C sends to the whole foreground group). Points are named ``<stage>:<moment>``, e.g.
``render:unit-written`` or ``export:shard-written``.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("GROUNDEDIT_CRASH_AT")
    if not spec:
        return
    point, _, count = spec.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        sig = signal.Signals[f"SIG{os.environ.get('GROUNDEDIT_CRASH_SIGNAL', 'KILL')}"]
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), sig)
        else:
            os.kill(os.getpid(), sig)
