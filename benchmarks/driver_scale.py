"""Driver scale: does anything in the driver grow faster than the input?

1. Source-only runs (ingest, the model-free select, export) over N small images (SA-1B-style
   tars of tiny JPEGs, ``--unit-size`` images a unit: the tiny profile's 4 by default, so units
   are many and per-unit costs show). Each run is
   a fresh process; it reports wall time, bytes the process wrote (``/proc/self/io`` wchar), bytes
   left in the run folder and the driver's peak RSS, per image. Flat per-image numbers from one
   size to the next mean the driver's cost per unit is O(1).
2. Planning of a synthetic input of N entries whose tars hold headers only (an image member and
   an annotation member per entry, 10k entries a tar like SA-1B's ~11k; units of 256 like the paper
   profile): CPU time, peak RSS and plan size, extrapolated to SA-1B (11M images in ~1000 tars).
3. Re-planning that input unchanged (``--replan-sizes``): the first planning, a re-plan before the
   source stage ran (every unit still to do: entries are written into the plan again), and a
   re-plan once every unit is done (the source stage's commits written as a finished unit's are,
   with the unit's chain hash and fingerprint): the case of every resumed run and every later
   ``groundedit run``. CPU time of each and tar headers read (``scan_tar`` calls); goal: the
   re-plan of done units takes <= 5% of the first planning's CPU.

    python benchmarks/driver_scale.py [--sizes 4000,32000,256000] [--plan-entries 1000000]
        [--replan-sizes 4000,32000] [--executor ray]
        [--pythonpath OTHER_CHECKOUT]   # run the measured processes against another checkout

Runs on CPU; ``--sizes`` / ``--plan-entries`` / ``--replan-sizes`` 0 skip a part.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SA1B_IMAGES = 11_000_000
SA1B_TARS = 1000
IMAGES_PER_TAR = 1000  # part 1
ENTRIES_PER_TAR = 10_000  # part 2


# --- inputs ---------------------------------------------------------------------------------------


def write_small_images(folder: Path, n: int) -> None:
    """``n`` 32x32 JPEGs (one encoded image, written under ``n`` names) in tars of 1000."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 60, 30)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(0, n, IMAGES_PER_TAR):
        with tarfile.open(
            folder / f"sa_{t // IMAGES_PER_TAR:06d}.tar", "w", format=tarfile.GNU_FORMAT
        ) as tar:
            for i in range(t, min(n, t + IMAGES_PER_TAR)):
                info = tarfile.TarInfo(f"sa_{i}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def write_header_only_tars(folder: Path, n: int) -> None:
    """``n`` entries (``sa_<i>.jpg`` + ``sa_<i>.json``, both empty) in tars of 10k entries: what
    planning reads (headers) without the bytes it skips."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(0, n, ENTRIES_PER_TAR):
        with open(folder / f"sa_{t // ENTRIES_PER_TAR:06d}.tar", "wb") as f:
            for i in range(t, min(n, t + ENTRIES_PER_TAR)):
                for ext in ("jpg", "json"):
                    f.write(tarfile.TarInfo(f"sa_{i}.{ext}").tobuf(tarfile.GNU_FORMAT))
            f.write(b"\0" * 1024)


def stages_with_unit_size(folder: Path, unit_size: int) -> Path:
    """The shipped specs, order cut to [ingest, select, export] (select is model-free and writes the
    target export reads: the stage contract refuses a pipeline without it), the tiny profile's
    unit size set."""
    import yaml

    from groundedit.specs import stages_dir

    shutil.copytree(stages_dir(), folder)
    (folder / "pipeline.yaml").write_text("order: [ingest, select, export]\n")
    spec = yaml.safe_load((folder / "ingest.yaml").read_text())
    spec.setdefault("profiles", {}).setdefault("tiny", {}).setdefault("params", {})["unit_size"] = unit_size
    (folder / "ingest.yaml").write_text(yaml.safe_dump(spec))
    return folder


# --- measured processes ---------------------------------------------------------------------------


def _io_written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return -1


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def child_ingest(inp: str, out: str) -> dict:
    from groundedit.engine.executors import make_executor
    from groundedit.engine.pipeline import Pipeline
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig(out=Path(out), input=Path(inp), seed=0, profile="tiny")
    executor = make_executor(os.environ.get("DRIVER_SCALE_EXECUTOR", "local"))
    base_rss, base_io = _rss_kb(), _io_written()
    start, cpu = time.perf_counter(), time.process_time()
    summary = Pipeline(config, executor).run("ingest")
    seconds = time.perf_counter() - start
    executor.close()
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "written": _io_written() - base_io,
        "rss_base_kb": base_rss,
        "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "units": summary.stages["ingest"].units_planned,
        "images": summary.stages["ingest"].rows_in,
    }


def _source(inp: Path, out: Path):
    """The source stage of a run of ``inp`` into ``out``, and its chain hash."""
    from groundedit.engine.chain import StageChain
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig(out=out, input=inp, seed=0, profile="tiny")
    chain = StageChain(config)
    return chain.classes["ingest"](chain.specs["ingest"], config), chain.hashes["ingest"]


def _plan(stage, chain_hash: str):
    """One planning into the stage's run folder, as the driver does it; returns the plan writer."""
    from groundedit.engine.planning import PlanWriter, SourcePlanner
    from groundedit.formats.commits import CommitStore

    out = stage.config.out
    writer = PlanWriter(out)
    for p in SourcePlanner(stage, chain_hash, CommitStore(out)).units():
        writer.add(p.unit, p.rows, p.fingerprint, p.entries, p.stamps)
    writer.commit()
    return writer


def child_plan(inp: str, out: str) -> dict:
    """One planning, measured after a warm-up (a first planning and a re-plan of a one-tar input in
    a scratch folder): what is measured is the planning's own work, not this process's first use of
    pyarrow, SQLite and pydantic (~0.2 s here, which would swamp a 4k-entry re-plan)."""
    import groundedit.formats.scan as scan
    from groundedit.engine.planning import PlanReader

    with tempfile.TemporaryDirectory(prefix="ge-warm-") as warm:
        write_header_only_tars(Path(warm) / "in", 10)
        for _ in range(2):
            _plan(*_source(Path(warm) / "in", Path(warm) / "out"))
    listed = []
    real_scan_tar = scan.scan_tar
    scan.scan_tar = lambda tar: listed.append(tar) or real_scan_tar(tar)  # count tars read
    stage, chain_hash = _source(Path(inp), Path(out))
    base_rss = _rss_kb()
    start, cpu = time.perf_counter(), time.process_time()
    writer = _plan(stage, chain_hash)
    seconds = time.perf_counter() - start
    plan_bytes = sum(p.stat().st_size for p in PlanReader(Path(out)).dir.iterdir())
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "rss_base_kb": base_rss,
        "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "entries": writer.rows,
        "units": writer.units,
        "plan_bytes": plan_bytes,
        "tars_read": len(listed),
    }


def child_mark_done(inp: str, out: str) -> dict:
    """Write the source stage's commit of every planned unit, as a unit that finished writes it."""
    from groundedit.engine.chain import StageChain
    from groundedit.engine.planning import PlanReader
    from groundedit.formats.commits import CommitStore, UnitCommit
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig(out=Path(out), input=Path(inp), seed=0, profile="tiny")
    chain_hash = StageChain(config).hashes["ingest"]
    store = CommitStore(Path(out))
    n = 0
    for t in PlanReader(Path(out)).tickets():
        store.write(
            UnitCommit(
                stage="ingest",
                unit=t.unit,
                chain_hash=chain_hash,
                input_fingerprint=t.fingerprint,
                output_fingerprint="-",
                rows_in=t.rows,
                kept=0,
            )
        )
        n += 1
    return {"units": n}


def run_child(
    kind: str, inp: Path, out: Path, stages: Path, pythonpath: str | None, executor="local"
) -> dict:
    env = {
        **os.environ,
        "GROUNDEDIT_STAGES_DIR": str(stages),
        "DRIVER_SCALE_EXECUTOR": executor,
        "RAY_ADDRESS": "",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, __file__, f"--child-{kind.replace('_', '-')}", str(inp), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4000,32000,256000", help="images of each ingest-only run")
    ap.add_argument("--unit-size", type=int, default=4)
    ap.add_argument("--plan-entries", type=int, default=1_000_000)
    ap.add_argument("--plan-unit-size", type=int, default=256, help="the paper profile's unit size")
    ap.add_argument("--replan-sizes", default="4000,32000", help="entries of each re-planning measure")
    ap.add_argument("--pythonpath", default=None, help="measure another checkout of groundedit")
    ap.add_argument(
        "--executor",
        default="local",
        help="'local' (the driver runs the units too) or 'ray' (a local Ray cluster; the driver's "
        "own RSS and writes only; CPU time is the driver's)",
    )
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--child-ingest", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-plan", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-mark-done", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for kind, fn in (("ingest", child_ingest), ("plan", child_plan), ("mark_done", child_mark_done)):
        if getattr(args, f"child_{kind}"):
            print(json.dumps(fn(*getattr(args, f"child_{kind}"))))
            return {}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip() and int(s)]
    replan_sizes = [int(s) for s in args.replan_sizes.split(",") if s.strip() and int(s)]
    result: dict = {"ingest": [], "planning": None, "replanning": []}
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ge-driver-", dir=args.work) as tmp:
        tmp = Path(tmp)
        stages = stages_with_unit_size(tmp / "stages", args.unit_size)
        print(
            f"driver_scale  source-only (ingest, select, export), {args.unit_size} images a unit, {args.executor} executor, "
            "a fresh driver process each"
        )
        print(
            f"  {'images':>8} {'units':>7} {'wall s':>8} {'cpu ms/img':>11} {'written KB/img':>15} "
            f"{'kept KB/img':>12} {'peak RSS MB':>12}"
        )
        for n in sizes:
            inp, out = tmp / f"in-{n}", tmp / f"run-{n}"
            write_small_images(inp, n)
            r = run_child("ingest", inp, out, stages, args.pythonpath, args.executor)
            r |= {"n": n, "run_folder_bytes": folder_bytes(out)}
            result["ingest"].append(r)
            print(
                f"  {n:>8} {r['units']:>7} {r['seconds']:>8.1f} {1000 * r['cpu_seconds'] / n:>11.2f} "
                f"{r['written'] / n / 1024:>15.2f} {r['run_folder_bytes'] / n / 1024:>12.2f} "
                f"{r['rss_peak_kb'] / 1024:>12.0f}"
            )
            shutil.rmtree(inp)
            shutil.rmtree(out)
        if len(result["ingest"]) >= 2:
            a, b = result["ingest"][0], result["ingest"][1]
            t = (b["cpu_seconds"] / b["n"]) / (a["cpu_seconds"] / a["n"])
            w = (b["written"] / b["n"]) / (a["written"] / a["n"])
            result["growth"] = {"cpu_time_per_image": t, "bytes_per_image": w}
            print(
                f"  {a['n']} -> {b['n']}: CPU time/image x{t:.2f}, bytes written/image x{w:.2f} (goal <= 1.5)"
            )
        if args.plan_entries:
            inp, out = tmp / "plan-in", tmp / "plan-run"
            start = time.perf_counter()
            write_header_only_tars(inp, args.plan_entries)
            made = time.perf_counter() - start
            plan_stages = stages_with_unit_size(tmp / "plan-stages", args.plan_unit_size)
            r = run_child("plan", inp, out, plan_stages, args.pythonpath)
            per_entry = r["cpu_seconds"] / r["entries"]
            r |= {
                "input_bytes": folder_bytes(inp),
                "sa1b_seconds": per_entry * SA1B_IMAGES,
                "sa1b_plan_bytes": r["plan_bytes"] / r["entries"] * SA1B_IMAGES,
            }
            result["planning"] = r
            print(
                f"planning  {r['entries']} entries ({2 * r['entries']} tar headers, "
                f"{r['input_bytes'] / 1e6:.0f} MB, made in {made:.0f} s) into {r['units']} units"
            )
            print(
                f"  {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU ({1e6 * per_entry:.1f} us/entry), peak RSS {r['rss_peak_kb'] / 1024:.0f} MB "
                f"(after imports {r['rss_base_kb'] / 1024:.0f} MB), plan {r['plan_bytes'] / 1e6:.1f} MB"
            )
            print(
                f"  SA-1B ({SA1B_IMAGES / 1e6:.0f}M images, {SA1B_TARS} tars), extrapolated: "
                f"{r['sa1b_seconds'] / 60:.0f} min, plan {r['sa1b_plan_bytes'] / 1e9:.1f} GB; memory does "
                f"not grow with entries (one tar of {ENTRIES_PER_TAR} entries at a time)"
            )
        if replan_sizes:
            plan_stages = stages_with_unit_size(tmp / "replan-stages", args.plan_unit_size)
            print(
                f"re-planning unchanged input  ({args.plan_unit_size} entries a unit, CPU s of the "
                "planning alone, a fresh process each; tars read = tar headers listed)"
            )
            print(
                f"  {'entries':>8} {'units':>6} {'first':>8} {'again, to do':>13} {'again, done':>12} "
                f"{'done/first':>11} {'tars read (first/again)':>24}"
            )
            for n in replan_sizes:
                inp, out = tmp / f"replan-in-{n}", tmp / f"replan-run-{n}"
                write_header_only_tars(inp, n)
                first = run_child("plan", inp, out, plan_stages, args.pythonpath)
                todo = run_child("plan", inp, out, plan_stages, args.pythonpath)
                run_child("mark_done", inp, out, plan_stages, args.pythonpath)
                done = run_child("plan", inp, out, plan_stages, args.pythonpath)
                r = {
                    "n": n,
                    "units": first["units"],
                    "first_cpu": first["cpu_seconds"],
                    "todo_cpu": todo["cpu_seconds"],
                    "done_cpu": done["cpu_seconds"],
                    "done_over_first": done["cpu_seconds"] / first["cpu_seconds"],
                    "tars_read": [first["tars_read"], todo["tars_read"], done["tars_read"]],
                }
                result["replanning"].append(r)
                print(
                    f"  {n:>8} {r['units']:>6} {r['first_cpu']:>8.3f} {r['todo_cpu']:>13.3f} "
                    f"{r['done_cpu']:>12.3f} {100 * r['done_over_first']:>10.1f}% "
                    f"{'/'.join(str(t) for t in r['tars_read']):>24}"
                )
                shutil.rmtree(inp)
                shutil.rmtree(out)
            print("  goal: done/first <= 5%")
    return result


if __name__ == "__main__":
    main()
