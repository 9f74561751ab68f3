"""``groundedit fixture`` and ``groundedit doctor``: a synthetic input to try things on, and whether
this machine is ready for a run."""

from __future__ import annotations

from pathlib import Path

import typer

from groundedit.cli.app import CliError, app, check_profile, console
from groundedit.specs import DEFAULT_PROFILE


@app.command()
def fixture(
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="folder for the shards sa_000000.tar, ... (created)"
    ),
    images: int = typer.Option(12, "--images", metavar="N", min=1, help="photos in all"),
    images_per_tar: int = typer.Option(
        6, "--images-per-tar", metavar="N", min=1, help="photos per shard (the last one may hold fewer)"
    ),
    width: int = typer.Option(320, "--width", metavar="PX", min=16, help="width of every photo"),
    height: int = typer.Option(240, "--height", metavar="PX", min=16, help="height of every photo"),
    seed: int = typer.Option(
        0, "--seed", metavar="N", help="seed of the photos and masks (the same seed, the same input)"
    ),
    pairs: int | None = typer.Option(
        None,
        "--pairs",
        metavar="N",
        min=1,
        help="write N edit pairs instead (pairs.jsonl + images/ + truth/, for `run --recipe pairs`): "
        "photos edited in known regions (recolour, removal, paste), a global tint, unchanged and "
        "resized pairs, in turn",
    ),
) -> None:
    """Write a deterministic synthetic SA-1B input: tar shards of multi-object photos (sa_<id>.jpg),
    each with its SA-1B annotation JSON (sa_<id>.json, one COCO RLE mask per object); with --pairs,
    edit pairs made from such photos, with the true region of each edit."""
    from groundedit.fixtures import write_sa1b_fixture

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file, not a folder")
    if out.is_dir() and next(out.iterdir(), None) is not None:
        raise CliError(f"--out {out} is not empty: the fixture goes into a new or empty folder")
    if pairs is not None:
        from groundedit.pairs_fixture import write_pairs_fixture

        manifest = write_pairs_fixture(out, pairs=pairs, size=(width, height), seed=seed)
        console.print(f"wrote {pairs} edit pairs to {out} (manifest: {manifest})")
        return

    tars = write_sa1b_fixture(
        out, images=images, images_per_tar=images_per_tar, size=(width, height), seed=seed
    )
    console.print(f"wrote {images} images in {len(tars)} shards to {out}")


@app.command()
def doctor(
    profile: str = typer.Option(
        DEFAULT_PROFILE, "--profile", metavar="NAME", help="the profile whose needs are checked"
    ),
) -> None:
    """Is this machine ready for a run: torch/CUDA, GPUs, vLLM, every model and file, and how to get each."""
    from groundedit.doctor import diagnose, render

    check_profile(profile)
    findings = diagnose(profile)
    print(render(findings))
    if any(f.level in ("missing", "warn") for f in findings):
        raise typer.Exit(1)
