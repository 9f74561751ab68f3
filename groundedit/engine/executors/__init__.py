"""Executors run stages over units: ``local`` in-process, ``ray`` on a Ray cluster."""

from __future__ import annotations

from groundedit.engine.executors.base import Executor, ExecutorError
from groundedit.engine.executors.local import LocalExecutor
from groundedit.engine.executors.ray import RayExecutor

EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str, **kwargs) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor '{name}' (choose from: {', '.join(EXECUTORS)})")
    return EXECUTORS[name](**kwargs) if name == "ray" else EXECUTORS[name]()


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "LocalExecutor", "RayExecutor", "make_executor"]
