"""Named crash points for kill-and-resume tests.

``GROUNDEDIT_CRASH_AT=<point>[@<n>]`` makes the process SIGKILL itself (and its process group,
when it leads one) the ``n``-th time it reaches ``<point>`` (default: the first); several points
may be given, comma-separated. Unset, a crash point costs one dictionary lookup.
``GROUNDEDIT_CRASH_SIGNAL=INT`` sends SIGINT instead (what a terminal's Ctrl-C sends to the whole
foreground group). ``GROUNDEDIT_CRASH_ONCE=<path>`` fires each point only if ``<path>.<point>``
does not exist yet (and creates it): a Ray worker that is restarted after the crash counts from zero
again, so this is how a test kills a worker exactly once at each point.

Points are named ``<stage>:<moment>`` (``render:unit-written``, ``export:shard-written``) or
``run:<moment>`` for the driver. Workers receive these settings from the driver.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("GROUNDEDIT_CRASH_AT")
    if not spec:
        return
    counts = dict(p.partition("@")[::2] for p in spec.split(","))
    if name not in counts:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] < int(counts[name] or 1):
        return
    once = os.environ.get("GROUNDEDIT_CRASH_ONCE")
    if once:
        try:
            os.close(os.open(f"{once}.{name.replace(':', '-')}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    sig = signal.Signals[f"SIG{os.environ.get('GROUNDEDIT_CRASH_SIGNAL', 'KILL')}"]
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), sig)
    else:
        os.kill(os.getpid(), sig)
