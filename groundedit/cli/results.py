"""``groundedit report``, ``export`` and ``eval``: what a run produced, seen, converted and scored."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console

from groundedit.cli.app import CliError, app, check_profile, console
from groundedit.formats.runfolder import RunFolder
from groundedit.specs import DEFAULT_PROFILE


@app.command()
def report(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="run folder"),
    to: Path | None = typer.Option(None, "--to", metavar="DIR", help="report folder (default: OUT/report)"),
    gallery_limit: int = typer.Option(
        500, "--gallery-limit", metavar="N", min=0, help="kept samples in the gallery"
    ),
    rejected_per_reason: int = typer.Option(
        12, "--rejected-per-reason", metavar="N", min=0, help="rejected samples shown per stage and reason"
    ),
) -> None:
    """Write a static HTML report of a run: funnel, distributions, cost, gallery, rejections."""
    from groundedit.report import build_report

    page = build_report(out, to, gallery_limit, rejected_per_reason)
    console.print(f"report: {page}", soft_wrap=True)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="run folder (its export stage finished)"),
    format: str = typer.Option(..., "--format", metavar="bagel-parquet|hf", help="'bagel-parquet' or 'hf'"),
    to: Path = typer.Option(..., "--to", metavar="DIR", help="new folder for the converted data"),
    layout: str = typer.Option(
        "both", "--layout", metavar="edit|chain|both", help="bagel-parquet: 'edit', 'chain' or 'both'"
    ),
    rows_per_file: int = typer.Option(
        1024, "--rows-per-file", metavar="N", min=1, help="bagel-parquet rows per file"
    ),
    rows_per_group: int = typer.Option(
        64, "--rows-per-group", metavar="N", min=1, help="bagel-parquet rows per row group"
    ),
) -> None:
    """Convert a run's exported samples to another training format (Bagel parquet, HF datasets)."""
    from groundedit.exporters import EXPORTERS, export_bagel_parquet, export_hf
    from groundedit.exporters.bagel import LAYOUTS
    from groundedit.formats.rundata import RunData

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
    bench: Path = typer.Option(
        ..., "--bench", metavar="PATH", help="bench .jsonl, SmartEdit folder, or a run folder"
    ),
    reader: str | None = typer.Option(
        None, "--reader", metavar="jsonl|smartedit|shards", help="jsonl, smartedit or shards (default: guess)"
    ),
    edited: Path | None = typer.Option(
        None, "--edited", metavar="DIR", help="folder of the editor's outputs"
    ),
    to: Path | None = typer.Option(
        None,
        "--to",
        metavar="DIR",
        help="folder for samples.csv and summary.csv (default: BENCH/eval for a run folder, else "
        "./eval-results)",
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        metavar="NAME",
        help=f"judge model: '{DEFAULT_PROFILE}' or 'tiny' (default: the scored run folder's own profile, "
        f"else '{DEFAULT_PROFILE}')",
    ),
    judge: bool = typer.Option(True, "--judge/--no-judge", help="score ES with the VLM judge"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="seed of the judge's sampling"),
    change_threshold: int = typer.Option(
        24, "--change-threshold", metavar="0-255", min=0, max=255, help="EGA: changed if a channel moves more"
    ),
    metrics_size: int = typer.Option(
        256, "--metrics-size", metavar="PX", min=0, help="PSNR/SSIM/LPIPS resize (0: source size)"
    ),
    lpips_net: str = typer.Option(
        "squeeze", "--lpips-net", metavar="squeeze|alex", help="LPIPS backbone: squeeze or alex"
    ),
    lpips_backbone: Path | None = typer.Option(
        None, "--lpips-backbone", metavar="FILE", help="torchvision backbone .pth"
    ),
    lpips_linear: Path | None = typer.Option(
        None, "--lpips-linear", metavar="FILE", help="lpips linear-layer .pth"
    ),
    clip_model: Path | None = typer.Option(
        None, "--clip-model", metavar="DIR", help="local CLIP model folder"
    ),
    limit: int | None = typer.Option(
        None, "--limit", metavar="N", min=1, help="score only the first N items"
    ),
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
    from groundedit.formats.runconfig import RunConfig

    run = RunConfig.load(bench) if bench.is_dir() else None
    if profile is None:
        profile = run.profile if run is not None else DEFAULT_PROFILE
    if to is None:
        # a scored run folder's results go to <run>/eval/ (beside report/) unless --to says
        to = RunFolder(bench).eval if run is not None else Path("eval-results")
    check_profile(profile)
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
