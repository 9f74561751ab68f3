"""The ``groundedit`` command line: run the pipeline, show a run's status, report on it, export and
evaluate edits, make a tiny input, train Bagel on the shards and edit with the result."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

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

from groundedit import __version__
from groundedit.specs import DEFAULT_PROFILE, SpecError, available_profiles

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Build grounding-oriented image-editing data from SA-1B photos.",
)
console = Console(stderr=True)


class CliError(Exception):
    """An error shown to the user as one line."""


def _version(value: bool) -> None:
    if value:
        print(f"groundedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """groundedit: the InterCoG data engine."""


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
        help="SA-1B tar shard, one image, or a folder of shards / images (searched "
        "recursively); a run folder that exists reuses its own",
    ),
    out: Path = typer.Option(..., "--out", help="run folder (created; rerun to resume)"),
    stage: str = typer.Option("all", "--stage", help=f"'all', or one stage: {_stage_names()}"),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help=f"'{DEFAULT_PROFILE}' (real models, the default) or 'tiny'; a run folder "
        "that exists reuses its own",
    ),
    executor: str = typer.Option("ray", "--executor", help="'ray' or 'local'"),
    seed: int | None = typer.Option(None, "--seed", help="seed of every random choice (default 0)"),
    limit: int | None = typer.Option(
        None, "--limit", min=0, help="use only the first N input images (0: no limit)"
    ),
    reconfigure: bool = typer.Option(
        False,
        "--reconfigure",
        help="allow another --input/--profile/--seed than the run folder was "
        "made with; the stages they change are redone",
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help="join this Ray cluster"),
    schedule: str = typer.Option(
        "stream",
        "--schedule",
        help="'stream': every stage at once, units flowing from one to the next (stages are split "
        "only where GPUs run short); 'stages': one stage at a time, for GPUs that cannot hold "
        "every model",
    ),
    units_in_flight: int | None = typer.Option(
        None,
        "--units-in-flight",
        min=1,
        help="backpressure: at most N units between the first stage and the last (default: twice "
        "the stages' workers, at least 8)",
    ),
) -> None:
    """Run the pipeline (or one stage) over INPUT into OUT, resuming what is finished."""
    from groundedit.executors import EXECUTORS, make_executor
    from groundedit.pipeline import Pipeline
    from groundedit.schedule import SCHEDULES
    from groundedit.settings import resolve_settings
    from groundedit.stages import RunContext

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file, not a folder")
    if input is not None and not input.exists():
        raise CliError(f"input {input} does not exist")
    if profile is not None and profile not in available_profiles():
        raise CliError(
            f"unknown profile '{profile}' (choose from: {', '.join(sorted(available_profiles()))})"
        )
    if executor not in EXECUTORS:
        raise CliError(f"unknown executor '{executor}' (choose from: {', '.join(EXECUTORS)})")
    if schedule not in SCHEDULES:
        raise CliError(f"unknown schedule '{schedule}' (choose from: {', '.join(SCHEDULES)})")
    info = resolve_settings(
        out,
        input=input,
        profile=profile,
        seed=seed,
        limit=limit,
        stage=stage,
        source_stage=_first_stage(),
        reconfigure=reconfigure,
    )
    ctx = RunContext(
        out=out.resolve(), input=Path(info.input), seed=info.seed, profile=info.profile, limit=info.limit
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
    kwargs = {"address": ray_address} if executor == "ray" else {}
    ex = make_executor(executor, **kwargs)
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            pipe = Pipeline(
                ctx,
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
    _print_summary(ctx.out, summary)
    failed = {(name, u): err for name, s in summary.items() for u, err in s.get("quarantined", {}).items()}
    if failed:
        _print_quarantined(ctx.out, failed)
        raise typer.Exit(3)


def _first_stage() -> str:
    from groundedit.specs import load_pipeline

    return load_pipeline()[0]


def _notice(message: str) -> None:
    console.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def _print_summary(out: Path, summary: dict[str, dict]) -> None:
    """One closing line: what was exported, or why nothing was."""
    dropped: Counter = Counter()
    for name, s in summary.items():
        for reason, n in s.get("rejected", {}).items():
            dropped[f"{name}/{reason}"] += n
    top = ", ".join(f"{k} {v}" for k, v in dropped.most_common(3))
    sink = next((s for s in summary.values() if "shards" in s), None)
    if sink is None:
        stage, s = list(summary.items())[-1]
        line = f"{stage}: {s['kept']} kept, {sum(s['rejected'].values())} dropped"
        console.print(line + (f" (top reasons: {top})" if top else ""), markup=False, highlight=False)
        return
    if sink["samples"] == 0:
        console.print(
            f"warning: 0 samples exported; top drop reasons: {top or 'none recorded'} "
            f"(every dropped sample is in {out / 'rejected.parquet'}; see `groundedit status --out {out}`)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    n, k = sink["samples"], sink["shards"]
    console.print(
        f"exported {n} sample{'' if n == 1 else 's'} in {k} shard{'' if k == 1 else 's'} to {out / 'shards'}"
        f"; dropped samples with reasons in {out / 'rejected.parquet'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _print_quarantined(out: Path, failed: dict[tuple[str, str], str]) -> None:
    lines = [
        f"error: {len(failed)} unit{'' if len(failed) == 1 else 's'} failed every attempt and "
        f"{'was' if len(failed) == 1 else 'were'} set aside (the rest of the run finished); "
        f"rerun `groundedit run --out {out}` to retry:"
    ]
    for (stage, unit), err in list(failed.items())[:10]:
        lines.append(f"  {stage} {unit}: {err.splitlines()[-1] if err else 'failed'}")
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more (see `groundedit status --out {out}`)")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@app.command()
def status(out: Path = typer.Option(..., "--out", help="run folder")) -> None:
    """Per-stage progress of a run folder, from its manifests."""
    from groundedit.chain import StageChain
    from groundedit.manifest import RunInfo
    from groundedit.stages import RunContext
    from groundedit.status import run_status

    info = RunInfo.load(out)
    if info is None:
        raise CliError(f"{out} is not a run folder (no manifests/run.json)")
    ctx = RunContext(
        out=out.resolve(), input=Path(info.input), seed=info.seed, profile=info.profile, limit=info.limit
    )
    table = Table(title=f"{out}  (profile {info.profile}, seed {info.seed})")
    for col in ("stage", "state", "units", "in", "kept", "rejected", "reasons"):
        table.add_column(col, justify="right" if col in ("units", "in", "kept", "rejected") else "left")
    for st in run_status(StageChain(ctx), ctx.out):
        reasons = ", ".join(f"{k} {v}" for k, v in st.rejected.most_common())
        units = f"{st.units_done}/{st.units_planned}" if st.units_planned else str(st.units_done)
        state = f"{st.state} ({st.detail})" if st.detail else st.state
        table.add_row(
            st.stage, state, units, str(st.rows_in), str(st.kept), str(sum(st.rejected.values())), reasons
        )
    # Wide enough for the reasons column even when stdout is not a terminal (rich would assume 80).
    Console(width=max(140, shutil.get_terminal_size().columns)).print(table)


@app.command()
def fixture(
    out: Path = typer.Option(..., "--out", help="folder for the synthetic SA-1B shards"),
    images: int = typer.Option(12, "--images", min=1),
    images_per_tar: int = typer.Option(6, "--images-per-tar", min=1),
    width: int = typer.Option(320, "--width", min=16),
    height: int = typer.Option(240, "--height", min=16),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a deterministic synthetic SA-1B input (tars of multi-object photos with masks)."""
    from groundedit.fixtures import write_sa1b_fixture

    tars = write_sa1b_fixture(
        out, images=images, images_per_tar=images_per_tar, size=(width, height), seed=seed
    )
    console.print(f"wrote {images} images in {len(tars)} shards to {out}")


@app.command()
def report(
    out: Path = typer.Option(..., "--out", help="run folder"),
    to: Path | None = typer.Option(None, "--to", help="report folder (default: OUT/report)"),
    gallery_limit: int = typer.Option(500, "--gallery-limit", min=0, help="kept samples in the gallery"),
    rejected_per_reason: int = typer.Option(
        12, "--rejected-per-reason", min=0, help="rejected samples shown per stage and reason"
    ),
) -> None:
    """Write a static HTML report of a run: funnel, distributions, cost, gallery, rejections."""
    from groundedit.report import build_report

    page = build_report(out, to, gallery_limit, rejected_per_reason)
    console.print(f"report: {page}", soft_wrap=True)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="run folder (its export stage finished)"),
    format: str = typer.Option(..., "--format", help="'bagel-parquet' or 'hf'"),
    to: Path = typer.Option(..., "--to", help="new folder for the converted data"),
    layout: str = typer.Option("both", "--layout", help="bagel-parquet: 'edit', 'chain' or 'both'"),
    rows_per_file: int = typer.Option(1024, "--rows-per-file", min=1, help="bagel-parquet rows per file"),
    rows_per_group: int = typer.Option(
        64, "--rows-per-group", min=1, help="bagel-parquet rows per row group"
    ),
) -> None:
    """Convert a run's exported samples to another training format (Bagel parquet, HF datasets)."""
    from groundedit.exporters import EXPORTERS, export_bagel_parquet, export_hf
    from groundedit.exporters.bagel import LAYOUTS
    from groundedit.rundata import RunData

    if format not in EXPORTERS:
        raise CliError(f"unknown format '{format}' (choose from: {', '.join(EXPORTERS)})")
    if layout not in (*LAYOUTS, "both"):
        raise CliError(f"unknown layout '{layout}' (choose from: {', '.join(LAYOUTS)}, both)")
    run = RunData(out)
    if format == "hf":
        summary = export_hf(run, to)
    else:
        layouts = LAYOUTS if layout == "both" else (layout,)
        summary = export_bagel_parquet(run, to, layouts, rows_per_file, rows_per_group)
    rows = ", ".join(f"{k} {v} rows" for k, v in summary.rows.items())
    console.print(f"{summary.format}: {rows} in {len(summary.files)} files at {summary.to}", soft_wrap=True)
    for reason, n in summary.skipped.most_common():
        console.print(f"  skipped {n}: {reason}", soft_wrap=True)


@app.command("eval")
def eval_(
    bench: Path = typer.Option(..., "--bench", help="bench .jsonl, SmartEdit folder, or a run folder"),
    reader: str | None = typer.Option(None, "--reader", help="jsonl, smartedit or shards (default: guess)"),
    edited: Path | None = typer.Option(None, "--edited", help="folder of the editor's outputs"),
    to: Path = typer.Option(Path("eval-results"), "--to", help="folder for samples.csv and summary.csv"),
    profile: str = typer.Option(DEFAULT_PROFILE, "--profile", help="judge model: 'paper' or 'tiny'"),
    judge: bool = typer.Option(True, "--judge/--no-judge", help="score ES with the VLM judge"),
    seed: int = typer.Option(0, "--seed", help="seed of the judge's sampling"),
    change_threshold: int = typer.Option(
        24, "--change-threshold", min=0, max=255, help="EGA: changed if a channel moves more"
    ),
    metrics_size: int = typer.Option(
        256, "--metrics-size", min=0, help="PSNR/SSIM/LPIPS resize (0: source size)"
    ),
    lpips_net: str = typer.Option("squeeze", "--lpips-net", help="LPIPS backbone: squeeze or alex"),
    lpips_backbone: Path | None = typer.Option(None, "--lpips-backbone", help="torchvision backbone .pth"),
    lpips_linear: Path | None = typer.Option(None, "--lpips-linear", help="lpips linear-layer .pth"),
    clip_model: Path | None = typer.Option(None, "--clip-model", help="local CLIP model folder"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="score only the first N items"),
) -> None:
    """Score edits on a benchmark: EGA, leakage, PSNR/SSIM (unedited region), LPIPS, CLIP, judge ES."""
    import itertools

    from groundedit.evaluation import (
        EditJudge,
        EvalOptions,
        evaluate,
        read_bench,
        summarize,
        summary_table,
        write_items_csv,
        write_summary_csv,
    )

    if profile not in available_profiles():
        raise CliError(
            f"unknown profile '{profile}' (choose from: {', '.join(sorted(available_profiles()))})"
        )
    if (lpips_backbone is None) != (lpips_linear is None):
        raise CliError("LPIPS needs both --lpips-backbone and --lpips-linear")
    for path in (lpips_backbone, lpips_linear, clip_model):
        if path is not None and not path.exists():
            raise CliError(f"{path} does not exist")
    opts = EvalOptions(change_threshold=change_threshold, size=metrics_size)
    items = read_bench(bench, reader, edited)
    if lpips_backbone is not None:
        from groundedit.evaluation.perceptual import LPIPS

        opts.lpips = LPIPS.from_files(lpips_net, lpips_backbone, lpips_linear)
    if clip_model is not None:
        from groundedit.evaluation.perceptual import CLIPScorer

        opts.clip = CLIPScorer(clip_model)
    if judge:
        opts.judge = EditJudge.load(profile, seed)
        opts.judge_batch = opts.judge.spec.batch_size
        opts.judge.setup()
    try:
        results = list(evaluate(itertools.islice(items, limit), opts))
    finally:
        if opts.judge is not None:
            opts.judge.teardown()
    if not results:
        raise CliError(f"{bench} holds no items to score")
    rows = summarize(results)
    write_items_csv(results, to / "samples.csv")
    write_summary_csv(rows, to / "summary.csv")
    Console(width=max(120, shutil.get_terminal_size().columns)).print(summary_table(rows))
    console.print(f"wrote {to / 'samples.csv'} and {to / 'summary.csv'}", soft_wrap=True)


_LOSS_TERMS = ("ce", "mse", "tv", "vv", "mask")


@app.command()
def train(
    data: list[str] = typer.Option(
        [],
        "--data",
        help="training data, repeatable: a run folder, shards/ folder or .tar (our shards), or a Bagel "
        "parquet_info .json / folder of .parquet; PATH=WEIGHT sets a source's mixing weight (default 1)",
    ),
    out: Path | None = typer.Option(None, "--out", help="output folder: checkpoints, metrics.jsonl, model/"),
    profile: str = typer.Option(DEFAULT_PROFILE, "--profile", help="'paper' or 'tiny' (stages/train.yaml)"),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="override the spec's max_steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in OUT"),
    lora: bool = typer.Option(
        False, "--lora", help="one-GPU mode: LoRA adapters (spec section lora), Bagel frozen, heads trained"
    ),
    eight_bit: bool = typer.Option(False, "--eight-bit", help="8-bit AdamW state (optim.eight_bit; torchao)"),
    nproc_per_node: int = typer.Option(
        1,
        "--nproc-per-node",
        min=1,
        help="processes (GPUs) on this machine: launches torchrun with FSDP2; for several machines run "
        "torchrun yourself (README)",
    ),
    plan: bool = typer.Option(
        False, "--plan", help="print what the run needs per GPU (no weights read, nothing trained) and exit"
    ),
    as_json: bool = typer.Option(False, "--json", help="with --plan: print it as one JSON object"),
    gpu_memory: float = typer.Option(80.0, "--gpu-memory", min=1, help="with --plan: GiB per GPU to fit in"),
    plan_samples: int = typer.Option(
        64, "--plan-samples", min=1, help="with --plan: samples of --data whose token lengths are planned"
    ),
) -> None:
    """Fine-tune Bagel on exported shards with the InterCoG grounding losses."""
    import os

    from groundedit.train.launch import TrainArgs, torchrun_command

    if plan:
        args = TrainArgs(data=data, out=out or Path("."), profile=profile, lora=lora, eight_bit=eight_bit)
        _print_plan(args, nproc_per_node, gpu_memory, plan_samples, as_json)
        return
    if not data or out is None:
        raise CliError("train needs --data and --out (or --plan)")
    args = TrainArgs(
        data=data,
        out=out,
        profile=profile,
        max_steps=max_steps,
        resume=resume,
        lora=lora,
        eight_bit=eight_bit,
    )
    spec = args.spec()  # a bad profile or spec stops here, before torchrun starts
    if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_torchrun(torchrun_command(nproc_per_node, args)))
    _run_training(args, spec)


def _print_plan(args, processes: int, gpu_memory: float, samples: int, as_json: bool) -> None:
    from groundedit.train.plan import make_plan, render

    if args.lora and processes > 1:
        raise CliError("LoRA is the one-process mode: plan it without --nproc-per-node")
    result = make_plan(args.spec(), args.data, processes, gpu_memory, samples)
    print(result.model_dump_json() if as_json else render(result))


@app.command("train-rank", hidden=True)
def train_rank(args_json: str = typer.Argument(..., help="a TrainArgs object as JSON")) -> None:
    """One rank of ``train --nproc-per-node N`` (torchrun starts it with the parent's arguments)."""
    from groundedit.train.launch import TrainArgs

    args = TrainArgs.model_validate_json(args_json)
    _run_training(args, args.spec())


def _run_training(args, spec) -> None:
    import os

    from groundedit.train.trainer import train as run_training

    main_rank = os.environ.get("RANK", "0") == "0"
    view = _TrainView(spec.max_steps) if main_rank else None
    try:
        model_dir = run_training(spec, args.data, args.out, resume=args.resume, on_step=view)
    finally:
        if view is not None:
            view.close()
    if main_rank:
        console.print(f"model: {model_dir}   metrics: {args.out / 'metrics.jsonl'}", soft_wrap=True)


def _torchrun(command: list[str]) -> int:
    """Run ``command`` (a torchrun launch of this CLI); its exit code."""
    import subprocess

    code = subprocess.run(command, check=False).returncode
    if code:
        console.print(f"error: torchrun exited with {code} (the failing rank's error is above)", markup=False)
    return code


class _TrainView:
    """A progress bar started at the first finished step (so set-up errors print alone): each loss term,
    tokens/s, ETA."""

    def __init__(self, total: int) -> None:
        self.total, self.progress, self.task = total, None, None

    def __call__(self, record) -> None:
        if self.progress is None:
            columns = [
                TextColumn("train"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"),
                TextColumn("{task.fields[speed]}"),
                TimeRemainingColumn(),
            ]
            self.progress = Progress(*columns, console=console)
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=record.step - 1, losses="", speed=""
            )
        losses = " ".join(f"{t} {record.terms[t]:.3f}" for t in _LOSS_TERMS)
        speed = f"{record.tokens / max(record.seconds, 1e-9):.0f} tok/s"
        self.progress.update(
            self.task, completed=record.step, losses=f"loss {record.loss:.3f} ({losses})", speed=speed
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _edit_jobs(
    image: Path | None, instruction: str | None, batch: Path | None
) -> list[tuple[str, Path, str]]:
    """(name, image, instruction) of each edit asked for."""
    import json

    if batch is not None:
        if image is not None or instruction is not None:
            raise CliError("give either --batch or --image with --instruction, not both")
        if not batch.is_file():
            raise CliError(f"--batch {batch} does not exist")
        jobs = []
        for n, line in enumerate(batch.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                path, text = Path(row["image"]), str(row["instruction"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CliError(
                    f'--batch {batch} line {n}: expected {{"image": ..., "instruction": ...}}'
                ) from e
            path = path if path.is_absolute() else batch.parent / path
            jobs.append((f"{len(jobs):04d}-{path.stem}", path, text))
        if not jobs:
            raise CliError(f"--batch {batch} lists no edits")
    elif image is None or instruction is None:
        raise CliError("give --image and --instruction (or --batch FILE.jsonl)")
    else:
        jobs = [(image.stem, image, instruction)]
    for _, path, _ in jobs:
        if not path.is_file():
            raise CliError(f"image {path} does not exist")
    return jobs


@app.command()
def edit(
    ckpt: Path = typer.Option(
        ..., "--ckpt", help="a training output folder, or a Bagel folder (official layout)"
    ),
    image: Path | None = typer.Option(None, "--image", help="image to edit"),
    instruction: str | None = typer.Option(None, "--instruction", help="what to change"),
    batch: Path | None = typer.Option(None, "--batch", help='JSONL of {"image": ..., "instruction": ...}'),
    reasoning: bool = typer.Option(False, "--reasoning", help="ground the target first (InterCoG)"),
    out: Path = typer.Option(Path("edits"), "--out", help="folder for the results"),
    steps: int = typer.Option(50, "--steps", min=2, help="denoising steps per image"),
    seed: int = typer.Option(0, "--seed"),
    max_text_tokens: int = typer.Option(1000, "--max-text-tokens", min=1, help="cap of each reasoning text"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="edits per forward"),
) -> None:
    """Edit images with a (fine-tuned) Bagel; --reasoning also saves the grounding text and image."""
    import json

    from PIL import Image

    from groundedit.imaging import SampleError, decode_image
    from groundedit.models.bagel import BagelEditor, CheckpointError, ReasoningEditor
    from groundedit.train.checkpoint import INTERCOG_FILE, MODEL_DIR
    from groundedit.train.spec import load_train_spec

    folder = ckpt / MODEL_DIR if (ckpt / MODEL_DIR).is_dir() else ckpt
    if not (folder / "ema.safetensors").is_file():
        raise CliError(
            f"--ckpt {ckpt}: no Bagel checkpoint there (neither {folder}/ema.safetensors nor model/)"
        )
    jobs = _edit_jobs(image, instruction, batch)
    try:
        images = [decode_image(p.read_bytes(), 64_000_000) for _, p, _ in jobs]
    except SampleError as e:
        raise CliError(f"cannot read an input image: {e}") from e
    prompts_file = folder / INTERCOG_FILE
    if prompts_file.is_file():
        prompts = json.loads(prompts_file.read_text())
    else:  # a checkpoint not written by groundedit train: this project's prompts
        grounding, plain = load_train_spec().system_prompts()
        prompts = {"grounding_system": grounding, "edit_system": plain}
    out.mkdir(parents=True, exist_ok=True)
    try:
        editor = BagelEditor.from_pretrained(folder)
    except CheckpointError as e:
        raise CliError(str(e)) from e
    texts = [t for _, _, t in jobs]
    rows = []
    with console.status(f"editing {len(jobs)} image(s){' with reasoning' if reasoning else ''}"):
        if reasoning:
            results = ReasoningEditor(editor, prompts["grounding_system"]).edit(
                images, texts, seed=seed, steps=steps, max_text_tokens=max_text_tokens, batch_size=batch_size
            )
            for (name, path, text), r in zip(jobs, results, strict=True):
                files = {
                    "grounding": out / f"{name}.grounding.txt",
                    "grounded": out / f"{name}.grounded.png",
                    "description": out / f"{name}.description.txt",
                    "edited": out / f"{name}.edited.png",
                }
                files["grounding"].write_text(r.grounding)
                r.grounded.save(files["grounded"])
                files["description"].write_text(r.description)
                r.edited.save(files["edited"])
                rows.append(
                    {"image": str(path), "instruction": text, **{k: str(v) for k, v in files.items()}}
                )
        else:
            edited: list[Image.Image] = editor.edit(
                images,
                texts,
                seed=seed,
                steps=steps,
                system_prompt=prompts["edit_system"],
                batch_size=batch_size,
            )
            for (name, path, text), im in zip(jobs, edited, strict=True):
                im.save(out / f"{name}.edited.png")
                rows.append(
                    {"image": str(path), "instruction": text, "edited": str(out / f"{name}.edited.png")}
                )
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    console.print(f"wrote {len(rows)} edit(s) to {out} (results.jsonl)", soft_wrap=True)


@app.command()
def doctor(
    profile: str = typer.Option(DEFAULT_PROFILE, "--profile", help="the profile whose needs are checked"),
) -> None:
    """Is this machine ready for a run: torch/CUDA, GPUs, vLLM, every model and file, and how to get each."""
    from groundedit.doctor import diagnose, render

    if profile not in available_profiles():
        raise CliError(
            f"unknown profile '{profile}' (choose from: {', '.join(sorted(available_profiles()))})"
        )
    findings = diagnose(profile)
    print(render(findings))
    if any(f.level in ("missing", "warn") for f in findings):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors and expected failures print one line and exit non-zero."""
    from groundedit.evaluation.judge import JudgeError
    from groundedit.pipeline import PipelineError
    from groundedit.runlock import RunLocked
    from groundedit.runner import StageFailed
    from groundedit.train.errors import TrainError

    try:
        rc = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: bad flag, missing option, unknown command
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (
        CliError,
        SpecError,
        PipelineError,
        RunLocked,
        StageFailed,
        JudgeError,
        TrainError,
        FileNotFoundError,
        ValueError,
    ) as e:
        console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return 1
    # typer turns a Ctrl-C it catches itself (outside a command's own handler) into a return of 130.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
