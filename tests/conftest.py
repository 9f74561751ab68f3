"""Shared fixtures: one Ray cluster per session, tiny inputs built once, hostile inputs, run helpers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from groundedit.fixtures import annotation_json, jpeg_bytes, synthetic_photo, write_sa1b_fixture

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Tiny models are built once per test session, into a session folder (not ~/.cache)."""
    path = tmp_path_factory.mktemp("model-cache")
    os.environ["GROUNDEDIT_CACHE"] = str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return path


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache; ``hf_cache(repo_id, filename, source)`` puts a file into
    it exactly where ``hf download repo_id filename`` would (``models--org--name/snapshots/<rev>/``)."""
    import shutil

    from huggingface_hub import constants

    root = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    revision = "0" * 40

    def put(repo_id: str, filename: str, source: Path) -> Path:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        dest = repo / "snapshots" / revision / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        return dest

    return put


@pytest.fixture(scope="session")
def ray_cluster(model_cache):
    """A local Ray cluster shared by every test that needs one (started once, ~3 s). Started after
    the environment is set, so its workers see the session's model cache. Always a new cluster
    (``address="local"``): ``ray.init()`` alone would join one recorded by an earlier ``ray start``."""
    import ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_cluster) -> str:
    """The session cluster's address, for CLI runs in subprocesses (``--ray-address``)."""
    return ray_cluster.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def sa1b_input(tmp_path_factory) -> Path:
    """12 synthetic SA-1B photos in two tar shards."""
    d = tmp_path_factory.mktemp("sa1b")
    write_sa1b_fixture(d, images=12, images_per_tar=6, seed=0)
    return d


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(env: dict | None) -> dict[str, str]:
    """This process's environment with ``env`` applied (a ``None`` value removes the variable)."""
    merged = {**os.environ, **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def _cli_options(env: dict | None) -> dict:
    return {
        "env": cli_env(env),
        "start_new_session": True,
        "cwd": REPO,
        # A pytest started in the background (a non-interactive shell's `&`) ignores SIGINT, and the
        # child would inherit that: give it a terminal's default, as a user's run has.
        "preexec_fn": _default_sigint,
    }


def run_cli(
    *args: str, env: dict | None = None, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run ``groundedit`` in a subprocess (its own process group, so a crash point kills only it).
    ``env`` values of ``None`` unset a variable; ``timeout`` guards against a hang."""
    proc = subprocess.run(
        [sys.executable, "-m", "groundedit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **_cli_options(env),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"groundedit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def start_cli(*args: str, env: dict | None = None, log: Path) -> subprocess.Popen:
    """Start ``groundedit`` in the background, as :func:`run_cli` runs it; stdout and stderr go to
    ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "groundedit.cli", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            **_cli_options(env),
        )


def _good_photo(rng, width, height, image_id, name):
    """A photo whose first object is large enough and scored well enough to be selectable."""
    rgb, object_masks = synthetic_photo(rng, width, height, 3)
    doc = annotation_json(image_id, name, width, height, object_masks, rng)
    for ann in doc["annotations"]:
        ann["predicted_iou"], ann["stability_score"] = 0.95, 0.95
    return rgb, doc


def _jpeg(rgb, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def write_hostile_input(d: Path) -> dict[str, str]:
    """A folder mixing good photos with every kind of bad input. Returns key -> expected reason
    for the bad ones, and key -> "ok" for the unusual-but-good ones."""
    rng = np.random.default_rng(7)
    write_sa1b_fixture(d / "good", images=3, images_per_tar=3, seed=3)
    expect: dict[str, str] = {}
    w, h = 160, 120

    def pair(key: str, image_bytes: bytes, doc: dict | bytes | None, ext: str = "jpg") -> None:
        (d / f"{key}.{ext}").write_bytes(image_bytes)
        if doc is not None:
            (d / f"{key}.json").write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())

    rgb, doc = _good_photo(rng, w, h, 101, "sa_101.jpg")
    data = _jpeg(rgb)
    pair("sa_101", data[: len(data) // 2], doc)
    expect["sa_101"] = "image_truncated"

    rgb, doc = _good_photo(rng, w, h, 102, "sa_102.jpg")
    pair("sa_102", b"", doc)
    expect["sa_102"] = "empty_file"

    rgb, doc = _good_photo(rng, w, h, 103, "sa_103.jpg")
    text = json.dumps(doc).encode()
    pair("sa_103", _jpeg(rgb), text[: len(text) // 2])
    expect["sa_103"] = "annotation_json_invalid"

    rgb, doc = _good_photo(rng, w, h, 104, "sa_104.jpg")
    pair("sa_104", _jpeg(rgb), {"image": doc["image"]})
    expect["sa_104"] = "annotations_missing"

    rgb, doc = _good_photo(rng, w, h, 105, "sa_105.jpg")
    doc["annotations"][0]["segmentation"]["size"] = [h + 1, w]
    pair("sa_105", _jpeg(rgb), doc)
    expect["sa_105"] = "rle_size_mismatch"

    rgb, doc = _good_photo(rng, w, h, 106, "sa_106.jpg")
    pair("sa_106", _jpeg_cmyk(rgb), doc)
    expect["sa_106"] = "ok"

    rgb, doc = _good_photo(rng, w, h, 107, "sa_107.png")
    grey16 = (rgb.mean(-1).astype(np.uint16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, "PNG")  # mode I;16
    pair("sa_107", buf.getvalue(), doc, "png")
    expect["sa_107"] = "ok"

    rgb, doc = _good_photo(rng, w, h, 108, "sa_108.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(buf, "PNG")
    pair("sa_108", buf.getvalue(), doc, "png")
    expect["sa_108"] = "ok"

    rgb, doc = _good_photo(rng, w, h, 109, "sa_109.png")
    rgba = np.dstack([rgb, np.full((h, w), 128, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    pair("sa_109", buf.getvalue(), doc, "png")
    expect["sa_109"] = "ok"

    # EXIF orientation 6: the stored raster is w x h, shown rotated 90° clockwise; the annotation
    # describes the stored raster, so its masks must rotate with the image.
    rgb, doc = _good_photo(rng, w, h, 110, "sa_110.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    pair("sa_110", _jpeg(rgb, exif=exif.tobytes()), doc)
    expect["sa_110"] = "ok"

    rgb, _ = _good_photo(rng, w, h, 112, "sa_112.jpg")
    pair("sa_112", _jpeg_claiming_size(8000, 6000), None)  # 48 MP by its header, over the 40 MP cap
    expect["sa_112"] = "too_many_pixels"

    with tarfile.open(d / "evil.tar", "w") as tar:
        for name, payload in (("../x.jpg", _jpeg(rgb)), ("sa_113.jpg", _jpeg(rgb))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    expect["evil-x"] = "unsafe_tar_member"
    return expect


def _jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small JPEG whose header (SOF0) claims ``width`` x ``height``: the pixel cap is checked on
    the header, so this stands in for a huge photo without encoding one."""
    data = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _jpeg_cmyk(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="session")
def hostile_input(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("hostile")
    return d, write_hostile_input(d)


def _run_pipeline(
    input_path: Path,
    out: Path,
    executor: str = "local",
    seed: int = 0,
    stage: str | None = None,
    limit: int | None = None,
    stages: Path | None = None,
    recipe: str = "sa1b",
    **options,
):
    """``stages``: a spec folder to use instead of ``stages/`` (the driver loads every spec)."""
    from groundedit.engine.executors import make_executor
    from groundedit.engine.pipeline import Pipeline
    from groundedit.formats.runconfig import RunConfig

    config = RunConfig(out=out, input=input_path, seed=seed, profile="tiny", limit=limit, recipe=recipe)
    ex = make_executor(executor)
    with pytest.MonkeyPatch.context() as mp:
        if stages is not None:
            mp.setenv("GROUNDEDIT_STAGES_DIR", str(stages))
        try:
            return Pipeline(config, ex, **options).run(stage)
        finally:
            ex.close()


# The tiny profile records random verdicts without enforcing them; these are the tiny-model levels at
# which they reject part of the fixture, as the paper profile's verdicts reject part of SA-1B.
ENFORCED_VERDICTS = {
    "saliency": {"drop_salient": True},
    "qc": {"min_region_edit_accuracy": 3.0, "min_seamless_quality": 3.0},
    "edit": {"min_ega": 0.3, "max_change_outside": 0.2, "min_change_inside": 0.01},
}


@pytest.fixture(scope="session")
def enforcing_stages(tmp_path_factory) -> Path:
    """A copy of ``stages/`` whose tiny profile enforces its verdicts (``ENFORCED_VERDICTS``), for runs
    that readers (report, run data, exporters) need with rejections at the verdict stages."""
    import shutil

    import yaml

    from groundedit.specs import stages_dir

    d = tmp_path_factory.mktemp("enforcing") / "stages"
    shutil.copytree(stages_dir(), d)
    for name, params in ENFORCED_VERDICTS.items():
        path = d / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["profiles"]["tiny"].setdefault("params", {}).update(params)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a test module: tiny ops on a 2-vCPU VM are dominated by thread
    hand-offs, so one thread is ~20x faster here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def run_pipeline():
    """Run the tiny-profile pipeline in-process: ``run_pipeline(input, out, executor, seed, stage,
    limit, **Pipeline options)`` (options: ``schedule``, ``window``, ``max_attempts``)."""
    return _run_pipeline


@pytest.fixture(scope="session")
def tiny_run(sa1b_input, tmp_path_factory, enforcing_stages) -> Path:
    """One finished tiny-profile run (local executor) over the 12-photo fixture, shared by every test
    that reads a run (end to end, report, export, training). Its verdicts are enforced
    (``enforcing_stages``), so it holds kept samples and rejections with images, as a real run does.
    Read it; never write into it."""
    out = tmp_path_factory.mktemp("tiny-run")
    _run_pipeline(sa1b_input, out, executor="local", stages=enforcing_stages)
    return out


@pytest.fixture(scope="session")
def pairs_input(tmp_path_factory) -> Path:
    """The pairs fixture: 6 edit pairs (one of each kind) with their true regions, as a JSONL manifest."""
    from groundedit.pairs_fixture import write_pairs_fixture

    d = tmp_path_factory.mktemp("pairs-input")
    write_pairs_fixture(d, pairs=6, seed=0)
    return d


@pytest.fixture(scope="session")
def pairs_run(pairs_input, tmp_path_factory) -> Path:
    """One finished tiny-profile run of the pairs recipe (local executor) over ``pairs_input``, shared
    by the tests that read a pairs run. Read it; never write into it."""
    out = tmp_path_factory.mktemp("pairs-run")
    _run_pipeline(pairs_input, out, executor="local", recipe="pairs")
    return out


def read_shards(out: Path) -> dict[str, dict[str, bytes]]:
    """Every exported sample: key -> {member: bytes}, read with the standard tarfile module."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, member = m.name.partition(".")
                assert member not in samples.setdefault(key, {}), f"duplicate member {m.name}"
                samples[key][member] = tar.extractfile(m).read()
    return samples


@pytest.fixture(scope="session")
def shard_reader():
    return read_shards


@pytest.fixture(scope="session")
def cli_in_background():
    """``cli_in_background(*args, env=None, log=path)``: start the groundedit CLI, return its Popen."""
    return start_cli


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, env=None, check=True, timeout=None)``: run the groundedit CLI in a fresh process
    group."""
    return run_cli


def copy_stages(
    dest: Path, order: list[str] | None = None, edits: dict[str, tuple[str, str]] | None = None
) -> Path:
    """A copy of the stage specs for ``GROUNDEDIT_STAGES_DIR``: another stage ``order`` and/or text
    replacements ``{stage: (old, new)}`` in its YAML."""
    import shutil

    from groundedit.specs import stages_dir

    shutil.copytree(stages_dir(), dest)
    if order is not None:
        (dest / "pipeline.yaml").write_text(f"order: [{', '.join(order)}]\n")
    for stage, (old, new) in (edits or {}).items():
        text = (dest / f"{stage}.yaml").read_text()
        assert old in text, f"{old!r} not in {stage}.yaml"
        (dest / f"{stage}.yaml").write_text(text.replace(old, new))
    return dest


SPINE = ["ingest", "select", "render", "export"]


@pytest.fixture(scope="session")
def spine_stages(tmp_path_factory) -> Path:
    """Specs of the model-free spine (ingest → select → render → export): fast runs of the real
    driver, for tests about resume, staleness and crashes rather than about models."""
    return copy_stages(tmp_path_factory.mktemp("spine") / "stages", SPINE)


@pytest.fixture(scope="session")
def stages_copy():
    """``stages_copy(dest, order=None, edits=None)``: see :func:`copy_stages`."""
    return copy_stages


@pytest.fixture(scope="session")
def spine_reference(spine_stages, sa1b_input, tmp_path_factory):
    """An uninterrupted local run of the spine over ``sa1b_input``: what every interrupted run
    must end up with."""
    out = tmp_path_factory.mktemp("spine-reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
        _run_pipeline(sa1b_input, out)
    return out


# Annotated (SA-1B style), so that the spine has a target for each. Names that an ASCII-only key rule
# merged: accents composed or not, spaces vs underscores, case, folders vs underscores, dots.
ODD_NAMES = [
    "grâce",
    unicodedata.normalize("NFD", "grâce"),
    "grèce",
    "a b",
    "a_b",
    "A",
    "a",
    "sub dir/p",
    "sub_dir_p",
    "photo.v2",
]


def _write_named_photos(root: Path, names: list[str]) -> None:
    """A photo with one clearly selectable object per name, with its SA-1B annotation beside it."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        canvas = Image.new("RGB", (96, 64), (120, 120, 120))  # one red box: a clear target
        ImageDraw.Draw(canvas).rectangle((20 + i, 16, 60 + i, 44), fill=(200, 40, 40))
        rgb = np.asarray(canvas)
        doc = annotation_json(i + 1, f"{name}.jpg", 96, 64, [(rgb == (200, 40, 40)).all(-1)], rng)
        for ann in doc["annotations"]:
            ann["predicted_iou"], ann["stability_score"] = 0.95, 0.95
        path = root / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(rgb))
        path.with_suffix(".json").write_text(json.dumps(doc))


@pytest.fixture(scope="session")
def odd_names() -> list[str]:
    return ODD_NAMES


@pytest.fixture(scope="session")
def odd_names_run(tmp_path_factory, spine_stages):
    """A spine run over one annotated photo per name of ``ODD_NAMES`` (``<name>.jpg``): shards whose
    keys hold accents, hashes and such, for every reader of shards to take."""
    photos = tmp_path_factory.mktemp("odd-names")
    _write_named_photos(photos, ODD_NAMES)
    out = tmp_path_factory.mktemp("odd-names-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
        _run_pipeline(photos, out)
    return out
