"""A run folder remembers how it was made: ``manifests/run.json`` (input, recipe and how its input is
read, profile, seed, limit).

Resuming reuses those settings, so ``groundedit run --out runs/x`` alone continues a run. Asking an
existing folder for a different input, profile or seed is refused unless ``reconfigure`` is set
(then the stages those settings change are redone); ``--limit`` may change freely (it only adds or
drops input units).

A run folder is never mixed with other files: ``--out`` must be new, empty or a run folder (unless
``force``), and never the input itself.
"""

from __future__ import annotations

from pathlib import Path

from groundedit.formats.manifest import RunInfo
from groundedit.formats.runfolder import is_run_folder
from groundedit.specs import DEFAULT_PROFILE, DEFAULT_RECIPE


class SettingsError(ValueError):
    """The requested settings do not fit the run folder."""


def resolve_settings(
    out: Path,
    *,
    input: Path | None,
    profile: str | None,
    seed: int | None,
    limit: int | None,
    stage: str,
    source_stage: str,
    reconfigure: bool = False,
    recipe: str | None = None,
    input_kind: str | None = None,
    columns: dict[str, str] | None = None,
) -> RunInfo:
    """The settings this run uses: the folder's own, overridden by what was asked (``None`` = not
    asked; ``limit=0`` = no limit)."""
    new_input = str(input.resolve()) if input is not None else None
    saved = RunInfo.load(out)
    if saved is None:
        if new_input is None:
            raise SettingsError(f"{out} is not a run folder yet: --input is required")
        return RunInfo(
            input=new_input,
            profile=profile or DEFAULT_PROFILE,
            seed=seed or 0,
            limit=limit or None,
            recipe=recipe or DEFAULT_RECIPE,
            input_kind=input_kind,
            columns=columns or {},
        )
    asked = {
        "input": new_input,
        "profile": profile,
        "seed": seed,
        "recipe": recipe,
        "input_kind": input_kind,
        "columns": columns or None,
    }
    changed = {k: v for k, v in asked.items() if v is not None and v != getattr(saved, k)}
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
    return RunInfo(
        input=new_input or saved.input,
        profile=profile or saved.profile,
        seed=saved.seed if seed is None else seed,
        limit=saved.limit if limit is None else (limit or None),
        recipe=recipe or saved.recipe,
        input_kind=input_kind or saved.input_kind,
        columns=columns or saved.columns,
    )


def _flag(field: str) -> str:
    return field.replace("_", "-")


def _shown(value) -> str:
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
