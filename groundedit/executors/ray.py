"""Ray executor: each stage runs on a pool of actors sized and resourced from its spec.

``ray.init()`` joins the cluster at ``--ray-address`` / ``RAY_ADDRESS``, or starts a local one. Each
actor builds the stage and calls ``setup()`` once (models load once per worker), then processes
whole units; the driver alone writes manifests. A worker that dies is restarted and its unit
retried, so a flaky node costs a unit, not the run. The only module that imports Ray.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import groundedit
from groundedit.manifest import UnitRecord
from groundedit.runner import Unit, run_unit, setup_stage
from groundedit.specs import StageSpec
from groundedit.stages.base import RunContext, SourceStage, Stage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _import_root_as_cwd():
    """Ray puts the driver's working directory first on every worker's ``sys.path``. Started from
    the folder that holds a clone named ``groundedit/``, workers would import that folder (a
    namespace package whose ``stages/`` holds YAML) instead of the installed package. Starting Ray
    from the folder the package is imported from gives workers the same package as the driver."""
    here = Path.cwd()
    os.chdir(Path(groundedit.__file__).resolve().parent.parent)
    try:
        yield
    finally:
        os.chdir(here)


class _StageWorker:
    """Actor body: one set-up stage instance that runs units."""

    def __init__(self, stage_cls, spec: StageSpec, ctx: RunContext):
        self.stage = stage_cls(spec, ctx)
        setup_stage(self.stage)

    def run(self, unit: Unit, chain_hash: str) -> UnitRecord:
        return run_unit(self.stage, unit, chain_hash)

    def teardown(self) -> None:
        self.stage.teardown()


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 2):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self._started = False

    def _ray(self):
        if not self.address and "ray" not in sys.modules:
            # Ray's default for a new local cluster, said explicitly (and before Ray reads its
            # config at import): token auth stays on without the notice Ray prints on every start.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray

        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            with _import_root_as_cwd():
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=self.num_cpus, **kwargs)
            self._started = True
        return ray

    def pool_size(self, spec: StageSpec, n_units: int, resources: dict[str, float]) -> tuple[int, float]:
        """Workers to start and GPUs each reserves, given the cluster's resources."""
        gpus = spec.resources.gpus
        if gpus > 0 and resources.get("GPU", 0) < gpus:
            log.warning(
                "stage %s wants %s GPU(s) per worker; the cluster has none: running on CPU", spec.stage, gpus
            )
            gpus = 0.0
        fits = [spec.workers, n_units]
        if spec.resources.cpus > 0:
            fits.append(math.floor(resources.get("CPU", 1) / spec.resources.cpus))
        if gpus > 0:
            fits.append(math.floor(resources.get("GPU", 0) / gpus))
        return max(1, min(fits)), gpus

    def map_units(
        self,
        stage_cls: type[Stage | SourceStage],
        spec: StageSpec,
        ctx: RunContext,
        units: list[Unit],
        chain_hash: str,
    ) -> Iterator[UnitRecord]:
        if not units:
            return
        ray = self._ray()
        from ray.util import ActorPool

        n, gpus = self.pool_size(spec, len(units), ray.cluster_resources())
        actor_cls = ray.remote(_StageWorker).options(
            num_cpus=spec.resources.cpus,
            num_gpus=gpus,
            max_restarts=self.max_retries,
            max_task_retries=self.max_retries,
        )
        actors = [actor_cls.remote(stage_cls, spec, ctx) for _ in range(n)]
        try:
            pool = ActorPool(actors)
            yield from pool.map_unordered(lambda a, u: a.run.remote(u, chain_hash), units)
            ray.get([a.teardown.remote() for a in actors])
        finally:
            for a in actors:
                ray.kill(a)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
