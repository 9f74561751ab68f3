"""``groundedit run`` and ``groundedit status``: the pipeline over an input, and where a run stands."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from groundedit.cli.app import CliError, app, check_profile, console
from groundedit.cli.native_stderr import NativeStderr
from groundedit.formats.runfolder import RunFolder
from groundedit.specs import DEFAULT_PROFILE, SpecError

if TYPE_CHECKING:
    from groundedit.engine.summary import QuarantinedUnit, RunSummary


class _ProgressView:
    """Rich progress bars, one per stage: units done/planned, samples kept and rejected, ETA."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, ev) -> None:
        fields = {"kept": ev.kept, "rejected": ev.rejected}
        if ev.stage not in self.tasks:
            self.tasks[ev.stage] = self.progress.add_task(ev.stage, total=max(ev.units_total, 1), **fields)
        tid = self.tasks[ev.stage]
        done = ev.units_done if ev.units_total else (1 if ev.kind == "done" else 0)
        self.progress.update(tid, completed=done, **fields)


def _stage_names() -> str:
    from groundedit.specs import load_pipeline

    try:
        return ", ".join(load_pipeline())
    except SpecError:
        return "see stages/pipeline.yaml"


@app.command()
def run(
    input: Path | None = typer.Option(
        None,
        "--input",
        metavar="PATH",
        help="SA-1B tar shard, one image, or a folder of shards / images (searched "
        "recursively); a run folder that exists reuses its own",
    ),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="run folder (created; rerun to resume)"),
    stage: str = typer.Option(
        "all", "--stage", metavar="STAGE", help=f"'all', or one stage: {_stage_names()}"
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        metavar="NAME",
        help=f"'{DEFAULT_PROFILE}' (real models, the default) or 'tiny'; a run folder "
        "that exists reuses its own",
    ),
    executor: str = typer.Option("ray", "--executor", metavar="ray|local", help="'ray' or 'local'"),
    seed: int | None = typer.Option(
        None, "--seed", metavar="N", help="seed of every random choice (default 0)"
    ),
    limit: int | None = typer.Option(
        None, "--limit", metavar="N", min=0, help="use only the first N input images (0: no limit)"
    ),
    reconfigure: bool = typer.Option(
        False,
        "--reconfigure",
        help="allow another --input/--profile/--seed than the run folder was "
        "made with; the stages they change are redone",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        metavar="HOST:PORT|auto",
        help="join this running Ray cluster (default: RAY_ADDRESS; 'auto': the one `ray start` "
        "recorded on this machine); without either, a fresh local cluster is started for the run",
    ),
    schedule: str = typer.Option(
        "stream",
        "--schedule",
        metavar="stream|stages",
        help="'stream': every stage at once, units flowing from one to the next (stages are split "
        "only where GPUs run short); 'stages': one stage at a time, for GPUs that cannot hold "
        "every model",
    ),
    units_in_flight: int | None = typer.Option(
        None,
        "--units-in-flight",
        metavar="N",
        min=1,
        help="backpressure: at most N units between the first stage and the last (default: twice "
        "the stages' workers, at least 8)",
    ),
    force: bool = typer.Option(
        False, "--force", help="write into an --out folder that holds other files (not a run folder)"
    ),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        metavar="sa1b|pairs",
        help="'sa1b' (photos, edited by the pipeline; the default) or 'pairs' (existing edit pairs: "
        "their edit region is mined and their reasoning written); a run folder that exists reuses its own",
    ),
    input_kind: str | None = typer.Option(
        None,
        "--input-kind",
        metavar="KIND",
        help="pairs recipe: how to read --input: 'jsonl' (manifest), 'bagel-parquet', 'hf' (Parquet "
        "files or a save_to_disk folder), 'shards' (our own); default: guessed from the files",
    ),
    columns: str | None = typer.Option(
        None,
        "--columns",
        metavar="ROLE=COL,...",
        help="pairs recipe, --input-kind hf: the columns of source, target, instruction (and id), e.g. "
        "source=src_img,target=edited_img,instruction=edited_prompt_list; default: MagicBrush or "
        "OmniEdit names",
    ),
) -> None:
    """Run the pipeline (or one stage) over INPUT into OUT, resuming what is finished."""
    from groundedit.engine.executors import EXECUTORS, make_executor
    from groundedit.engine.pipeline import Pipeline
    from groundedit.engine.schedule import SCHEDULES
    from groundedit.engine.settings import check_out_folder, resolve_config
    from groundedit.formats.pairs import PairInputError, parse_columns
    from groundedit.formats.runconfig import RunConfig
    from groundedit.records import PAIR_KINDS, RECIPES

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file, not a folder")
    if input is not None and not input.exists():
        raise CliError(f"input {input} does not exist")
    check_out_folder(out, input, force)
    if profile is not None:
        check_profile(profile)
    if executor not in EXECUTORS:
        raise CliError(f"unknown executor '{executor}' (choose from: {', '.join(EXECUTORS)})")
    if schedule not in SCHEDULES:
        raise CliError(f"unknown schedule '{schedule}' (choose from: {', '.join(SCHEDULES)})")
    if recipe is not None and recipe not in RECIPES:
        raise CliError(f"unknown recipe '{recipe}' (choose from: {', '.join(RECIPES)})")
    if input_kind is not None and input_kind not in PAIR_KINDS:
        raise CliError(f"unknown input kind '{input_kind}' (choose from: {', '.join(PAIR_KINDS)})")
    try:
        mapping = parse_columns(columns)
    except PairInputError as e:
        raise CliError(str(e)) from None
    saved = RunConfig.load(out) if out.is_dir() else None
    chosen = recipe or (saved.recipe if saved else "sa1b")
    if (input_kind or mapping) and chosen != "pairs":
        raise CliError("--input-kind and --columns belong to the pairs recipe: add --recipe pairs")
    config = resolve_config(
        out,
        stage=stage,
        source_stage=_first_stage(chosen),
        reconfigure=reconfigure,
        input=input,
        profile=profile,
        seed=seed,
        limit=limit,
        recipe=recipe,
        input_kind=input_kind,
        columns=mapping or None,
    )
    columns = [
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("kept {task.fields[kept]}"),
        TextColumn("rejected {task.fields[rejected]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    ex = make_executor(executor, **({"address": ray_address} if executor == "ray" else {}))
    # Ray's native log lines (a warning on every run, retries while connecting) go to
    # OUT/logs/ray-driver.log instead of over the progress bars (see groundedit.cli.native_stderr).
    native = NativeStderr() if executor == "ray" else None
    with native or contextlib.nullcontext():
        try:
            with Progress(*columns, console=console, transient=False) as progress:
                pipe = Pipeline(
                    config,
                    ex,
                    on_event=_ProgressView(progress),
                    on_notice=_notice,
                    schedule=schedule,
                    window=units_in_flight,
                )
                if stage != "all" and stage not in pipe.order:
                    raise CliError(f"unknown stage '{stage}' (choose from: all, {', '.join(pipe.order)})")
                summary = pipe.run(None if stage == "all" else stage)
        except KeyboardInterrupt:
            console.print(
                f"interrupted: finished units are kept; rerun `groundedit run --out {out}` to resume",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        finally:
            ex.close()
            if native is not None and RunFolder(config.out).manifests.is_dir():
                native.save(RunFolder(config.out).driver_log)
    _print_summary(config.out, summary)
    if summary.quarantined:
        _print_quarantined(config.out, summary.quarantined)
        raise typer.Exit(3)


def _first_stage(recipe: str) -> str:
    from groundedit.specs import load_pipeline

    return load_pipeline(recipe=recipe)[0]


def _notice(message: str) -> None:
    console.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def _print_summary(out: Path, summary: RunSummary) -> None:
    """One closing line: what was exported, or why nothing was."""
    top = ", ".join(f"{k} {v}" for k, v in summary.dropped().most_common(3))
    sink = summary.sink
    if sink is None:
        last = list(summary.stages.values())[-1]
        line = f"{last.stage}: {last.kept} kept, {sum(last.rejected.values())} dropped"
        console.print(line + (f" (top reasons: {top})" if top else ""), markup=False, highlight=False)
        return
    folder = RunFolder(out)
    if sink.exported == 0:
        console.print(
            f"warning: 0 samples exported; top drop reasons: {top or 'none recorded'} "
            f"(every dropped sample is in {folder.rejected}; see `groundedit status --out {out}`)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    n, k = sink.exported, sink.shards
    console.print(
        f"exported {n} sample{'' if n == 1 else 's'} in {k} shard{'' if k == 1 else 's'} to {folder.shards}"
        f"; dropped samples with reasons in {folder.rejected}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _print_quarantined(out: Path, failed: list[QuarantinedUnit]) -> None:
    lines = [
        f"error: {len(failed)} unit{'' if len(failed) == 1 else 's'} failed every attempt and "
        f"{'was' if len(failed) == 1 else 'were'} set aside (the rest of the run finished); "
        f"rerun `groundedit run --out {out}` to retry:"
    ]
    for q in failed[:10]:
        lines.append(f"  {q.stage} {q.unit}: {q.error.splitlines()[-1] if q.error else 'failed'}")
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more (see `groundedit status --out {out}`)")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@app.command()
def status(out: Path = typer.Option(..., "--out", metavar="DIR", help="run folder")) -> None:
    """Per-stage progress of a run folder, from its manifests."""
    from groundedit.engine.chain import StageChain
    from groundedit.engine.status import run_status
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig.load(out)
    if config is None:
        raise CliError(f"{out} is not a run folder (no manifests/run.json)")
    table = Table(title=f"{out}  (recipe {config.recipe}, profile {config.profile}, seed {config.seed})")
    for col in ("stage", "state", "units", "in", "kept", "rejected", "reasons"):
        table.add_column(col, justify="right" if col in ("units", "in", "kept", "rejected") else "left")
    statuses = run_status(StageChain(config))
    for st in statuses:
        reasons = ", ".join(f"{k} {v}" for k, v in st.rejected.most_common())
        units = f"{st.units_done}/{st.units_planned}" if st.units_planned else str(st.units_done)
        state = f"{st.state} ({st.detail})" if st.detail else st.state
        table.add_row(
            st.stage, state, units, str(st.rows_in), str(st.kept), str(sum(st.rejected.values())), reasons
        )
    # Wide enough for the reasons column even when stdout is not a terminal (rich would assume 80).
    out_console = Console(width=max(140, shutil.get_terminal_size().columns))
    out_console.print(table)
    worked = [st for st in statuses if st.nodes]
    if worked:
        per_node = Table(title="done units per node (the node whose worker made each unit's commit)")
        per_node.add_column("node")
        for st in worked:
            per_node.add_column(st.stage, justify="right")
        for node in sorted({n for st in worked for n in st.nodes}):
            per_node.add_row(node or "(not recorded)", *(str(st.nodes.get(node, 0)) for st in worked))
        out_console.print(per_node)
