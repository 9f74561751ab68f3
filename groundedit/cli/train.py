"""``groundedit train`` and ``groundedit edit``: fine-tune Bagel on the shards, and edit with it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from groundedit.cli.app import CliError, app, console
from groundedit.specs import DEFAULT_PROFILE

_LOSS_TERMS = ("ce", "mse", "tv", "vv", "mask")


@app.command()
def train(
    data: list[str] = typer.Option(
        [],
        "--data",
        metavar="[KIND:]PATH[=WEIGHT]",
        help="training data, repeatable, [KIND:]PATH[=WEIGHT]: our shards (a run folder, shards/ folder or "
        ".tar), Bagel edit parquet (a parquet_info .json or .parquet folder), Bagel t2i parquet (image + "
        "captions) or Bagel vlm_sft .jsonl (images in images/ beside it); the kind is recognised, KIND: "
        "forces one (groundedit, unified_edit, t2i_pretrain, vlm_sft); WEIGHT overrides the spec's "
        "mixture weight of the source's kind",
    ),
    out: Path | None = typer.Option(
        None, "--out", metavar="DIR", help="output folder: checkpoints, metrics.jsonl, model/"
    ),
    profile: str = typer.Option(
        DEFAULT_PROFILE, "--profile", metavar="NAME", help="'paper' or 'tiny' (stages/train.yaml)"
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", metavar="N", min=1, help="override the spec's max_steps"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in OUT"),
    lora: bool = typer.Option(
        False, "--lora", help="one-GPU mode: LoRA adapters (spec section lora), Bagel frozen, heads trained"
    ),
    eight_bit: bool = typer.Option(False, "--eight-bit", help="8-bit AdamW state (optim.eight_bit; torchao)"),
    nproc_per_node: int = typer.Option(
        1,
        "--nproc-per-node",
        metavar="N",
        min=1,
        help="processes (GPUs) on this machine: launches torchrun with FSDP2; for several machines run "
        "torchrun yourself (README)",
    ),
    plan: bool = typer.Option(
        False, "--plan", help="print what the run needs per GPU (no weights read, nothing trained) and exit"
    ),
    as_json: bool = typer.Option(False, "--json", help="with --plan: print it as one JSON object"),
    gpu_memory: float = typer.Option(
        80.0, "--gpu-memory", metavar="GIB", min=1, help="with --plan: GiB per GPU to fit in"
    ),
    plan_samples: int = typer.Option(
        64,
        "--plan-samples",
        metavar="N",
        min=1,
        help="with --plan: samples of --data whose token lengths are planned",
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
def train_rank(
    args_json: str = typer.Argument(..., metavar="JSON", help="a TrainArgs object as JSON"),
) -> None:
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


class _EditView:
    """Progress of ``groundedit edit``: edits finished, and where the current batch stands (its phase:
    tokens of a text, or denoising steps of an image). Fed by the editors' ``on_progress`` events."""

    def __init__(self, edits: int, batch_size: int) -> None:
        self.batch_size, self.batches = batch_size, -(-edits // batch_size)
        columns = [
            TextColumn("{task.description:<32}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
        ]
        self.progress = Progress(*columns, console=console)
        self.edits = self.progress.add_task("edits", total=edits, unit="")
        self.phase = self.progress.add_task("starting", total=None, unit="")
        self.where = ""

    def __enter__(self) -> _EditView:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, ev) -> None:
        from groundedit.models.bagel.progress import FINISHED

        if ev.phase == FINISHED:
            self.progress.update(self.edits, completed=ev.first + ev.size)
            return
        where = (
            f"batch {ev.first // self.batch_size + 1}/{self.batches}: {ev.phase}"
            if self.batches > 1
            else ev.phase
        )
        if where != self.where:  # a new phase: its bar and its clock start afresh
            self.where = where
            self.progress.reset(
                self.phase, description=where, completed=ev.done, total=ev.total, unit=ev.unit
            )
        else:
            self.progress.update(self.phase, completed=ev.done, total=ev.total)


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
        ..., "--ckpt", metavar="DIR", help="a training output folder, or a Bagel folder (official layout)"
    ),
    image: Path | None = typer.Option(None, "--image", metavar="FILE", help="image to edit"),
    instruction: str | None = typer.Option(
        None, "--instruction", metavar="INSTRUCTION", help="what to change"
    ),
    batch: Path | None = typer.Option(
        None, "--batch", metavar="FILE", help='JSONL of {"image": ..., "instruction": ...}'
    ),
    reasoning: bool = typer.Option(False, "--reasoning", help="ground the target first (InterCoG)"),
    out: Path = typer.Option(Path("edits"), "--out", metavar="DIR", help="folder for the results"),
    steps: int = typer.Option(
        50, "--steps", metavar="N", min=2, help="sampling timesteps per image (N - 1 denoising steps)"
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="edit i is seeded with N + i"),
    max_text_tokens: int = typer.Option(
        1000, "--max-text-tokens", metavar="N", min=1, help="cap of each reasoning text"
    ),
    batch_size: int = typer.Option(8, "--batch-size", metavar="N", min=1, help="edits per forward"),
) -> None:
    """Edit images with a (fine-tuned) Bagel; --reasoning also saves the grounding text and image."""
    import json

    from PIL import Image

    from groundedit.image.codec import SampleError, decode_image
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
    with _EditView(len(jobs), batch_size) as view:
        if reasoning:
            results = ReasoningEditor(editor, prompts["grounding_system"]).edit(
                images,
                texts,
                seed=seed,
                steps=steps,
                max_text_tokens=max_text_tokens,
                batch_size=batch_size,
                on_progress=view,
            )
        else:
            edited: list[Image.Image] = editor.edit(
                images,
                texts,
                seed=seed,
                steps=steps,
                system_prompt=prompts["edit_system"],
                batch_size=batch_size,
                on_progress=view,
            )
    if reasoning:
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
            rows.append({"image": str(path), "instruction": text, **{k: str(v) for k, v in files.items()}})
    else:
        for (name, path, text), im in zip(jobs, edited, strict=True):
            im.save(out / f"{name}.edited.png")
            rows.append({"image": str(path), "instruction": text, "edited": str(out / f"{name}.edited.png")})
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    console.print(f"wrote {len(rows)} edit(s) to {out} (results.jsonl)", soft_wrap=True)
