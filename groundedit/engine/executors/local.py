"""In-process executor: every stage of a wave set up in this process, each unit carried through all
of them before the next one starts. Simple and deterministic: tests, debugging, small runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from groundedit.engine.planning import PlanReader
from groundedit.engine.tickets import Ticket
from groundedit.engine.worker import StageJob, StageWorker
from groundedit.formats.commits import node_name


class LocalExecutor:
    name = "local"

    def start(self) -> str | None:
        return None

    def capacity(self, gpus_needed: bool) -> dict[str, float]:
        gpus = 0
        if gpus_needed:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}

    def stream(self, jobs: list[StageJob], plan: PlanReader, window: int) -> Iterator[Ticket]:
        workers = [StageWorker(job) for job in jobs]
        try:
            for ticket in plan.tickets():
                for w in workers:
                    ticket = w.step(ticket)
                yield ticket
        finally:
            for w in workers:
                w.close()

    def on_every_node(self, fn: Callable, *args) -> dict[str, object]:
        return {node_name(): fn(*args)}

    def call(self, fn: Callable, *args):
        return fn(*args)

    def close(self) -> None:
        pass
