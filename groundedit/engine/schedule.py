"""Which stages run together, and what each worker reserves.

``stream`` (the default) runs every stage of the run at once, each on its own worker pool, units
flowing from one to the next; stages are cut into consecutive *waves* only where the cluster's GPUs
cannot hold every GPU stage's workers at once. ``stages`` runs one stage at a time (one wave per
stage): for GPUs whose memory cannot hold every model. CPU reservations are logical: when a wave's
stages ask for more CPUs than the cluster has, each is scaled down so every stage still gets a
worker (the OS shares the cores). A stage that asks for GPUs on a cluster without enough of them
fails before any work, unless its spec asks for CPU (``resources.gpus: 0``).
"""

from __future__ import annotations

import math

from groundedit.specs import StageSpec

SCHEDULES = ("stream", "stages")


class ResourceError(RuntimeError):
    """A stage cannot run on this cluster as specified."""


def check_gpus(specs: dict[str, StageSpec], capacity: dict[str, float], where: str) -> None:
    for name, spec in specs.items():
        want = spec.resources.gpus
        if want > 0 and capacity.get("GPU", 0) < want:
            has = capacity.get("GPU", 0)
            raise ResourceError(
                f"stage '{name}' asks for {want:g} GPU(s) per worker but {where} has "
                f"{'none' if not has else f'{has:g}'}; set resources.gpus: 0 in stages/{name}.yaml "
                "(or its profile) to run it on CPU"
            )


def waves(
    names: list[str], specs: dict[str, StageSpec], capacity: dict[str, float], mode: str
) -> list[list[str]]:
    """Consecutive groups of ``names`` to run together."""
    if mode not in SCHEDULES:
        raise ValueError(f"unknown schedule '{mode}' (choose from: {', '.join(SCHEDULES)})")
    if mode == "stages":
        return [[n] for n in names]
    out: list[list[str]] = [[]]
    gpus = 0.0
    for n in names:
        want = specs[n].resources.gpus
        if out[-1] and want and gpus + want > capacity.get("GPU", 0):
            out.append([])
            gpus = 0.0
        out[-1].append(n)
        gpus += want
    return out


def worker_resources(
    wave: list[str], specs: dict[str, StageSpec], capacity: dict[str, float]
) -> dict[str, dict]:
    """What one worker of each stage of ``wave`` reserves, so that one worker per stage fits."""
    total = sum(specs[n].resources.cpus for n in wave)
    scale = min(1.0, capacity.get("CPU", 0) / total) if total else 1.0
    return {
        n: {"CPU": math.floor(specs[n].resources.cpus * scale * 1e4) / 1e4, "GPU": specs[n].resources.gpus}
        for n in wave
    }
