"""A run folder remembers how it was made: ``manifests/run.json`` (the persisted part of the
:class:`~groundedit.formats.runconfig.RunConfig`: input, recipe and how its input is read, profile,
seed, limit).

Resuming reuses those settings, so ``groundedit run --out runs/x`` alone continues a run. Asking an
existing folder for a different input, profile or seed is refused unless ``reconfigure`` is set
(then the stages those settings change are redone); ``--limit`` may change freely (it only adds or
drops input units).

A run folder is never mixed with other files: ``--out`` must be new, empty or a run folder (unless
``force``), and never the input itself.
"""

from __future__ import annotations

from pathlib import Path

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.runfolder import is_run_folder


class SettingsError(ValueError):
    """The requested settings do not fit the run folder."""


def resolve_config(
    out: Path, *, stage: str, source_stage: str, reconfigure: bool = False, **asked: object
) -> RunConfig:
    """The configuration this run uses: the folder's own, overridden by what was asked. ``asked``
    holds persisted fields of :class:`RunConfig` (``None`` = not asked; ``limit=0`` = no limit)."""
    unknown = set(asked) - set(RunConfig.settings())
    if unknown:
        raise TypeError(f"not persisted run settings: {', '.join(sorted(unknown))}")
    asked = {k: v for k, v in asked.items() if v is not None}
    if "input" in asked:
        asked["input"] = Path(asked["input"]).resolve()
    if asked.get("limit") == 0:
        asked["limit"] = None
    out = Path(out).resolve()
    saved = RunConfig.load(out)
    if saved is None:
        if "input" not in asked:
            raise SettingsError(f"{out} is not a run folder yet: --input is required")
        return RunConfig(out=out, **asked)
    changed = {k: asked[k] for k in RunConfig.GUARDED if k in asked and asked[k] != getattr(saved, k)}
    if changed and not reconfigure:
        was = ", ".join(f"--{_flag(k)} {_shown(getattr(saved, k))}" for k in changed)
        now = ", ".join(f"--{_flag(k)} {_shown(v)}" for k, v in changed.items())
        raise SettingsError(
            f"{out} was made with {was}; this run asks for {now}. Leave those flags out to resume, "
            "use another --out, or add --reconfigure to redo the stages they change"
        )
    if "input" in changed and stage not in ("all", source_stage):
        raise SettingsError(
            f"a new --input is read by '{source_stage}' only: run --stage {source_stage} or --stage all"
        )
    return RunConfig(out=out, **(saved.model_dump(include=set(RunConfig.settings())) | asked))


def _flag(field: str) -> str:
    return field.replace("_", "-")


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def check_out_folder(out: Path, input: Path | None, force: bool = False) -> None:
    """Refuse an ``--out`` that is the input, or a folder of other files (unless ``force``): a run
    writes ``data/``, ``shards/`` and more there, and reading or mixing them up loses data."""
    if input is not None and input.resolve() == out.resolve():
        raise SettingsError(f"--out {out} is the --input folder: give the run a folder of its own")
    if input is not None and is_run_folder(input):
        raise SettingsError(f"--input {input} is a groundedit run folder: its outputs are not input")
    if not out.is_dir() or force or is_run_folder(out):
        return
    if next(out.iterdir(), None) is not None:
        raise SettingsError(
            f"--out {out} is not empty and not a run folder: use a new or empty folder, "
            "or add --force to write the run among its files"
        )
