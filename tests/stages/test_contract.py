"""Each stage's declared contract is what its code really reads and writes.

Every stage runs twice on the same input samples of the shared tiny run: once on the sample as the
run had it, once on a copy holding only what the stage declares it reads (``reads`` and
``reads_if_present``; every other field at its default). What it declares it writes must come out the
same, and be filled in. A stage that reads a field it does not declare gives another answer (or
fails) on the stripped copy; one that declares a write it does not make leaves the field as it was.
``key`` and ``source`` cannot be stripped (every sample has them), nor the provenance (the protocol).
The pairs recipe's stages (and the shared ones, on edit pairs) run on the shared tiny pairs run.
"""

from __future__ import annotations

import typing

import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows
from groundedit.formats.tar import ArtifactPack
from groundedit.records import BlobRef, Sample
from groundedit.specs import load_pipeline, load_spec
from groundedit.stages import STAGES, SinkStage, SourceStage, UnitIO

pytestmark = pytest.mark.slow


def _parts(field: str) -> set[str] | None:
    """The parts ``field.part`` may name (None: any key of a dict field)."""
    annotation = Sample.model_fields[field].annotation
    if typing.get_origin(annotation) is dict:
        return None
    model = next(a for a in (annotation, *typing.get_args(annotation)) if hasattr(a, "model_fields"))
    return set(model.model_fields)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declared_names_are_sample_fields(name):
    cls = STAGES[name]
    for declared in (*cls.reads, *cls.reads_if_present, *cls.writes):
        field, _, part = declared.partition(".")
        assert field in Sample.model_fields, f"{name}: {declared}"
        assert field not in ("provenance", "rejection"), "the protocol, not a contract"
        if part:
            parts = _parts(field)
            assert parts is None or part in parts, f"{name}: {declared}"


def only(sample: Sample, names: tuple[str, ...]) -> Sample:
    """``sample`` holding only ``names`` (fields, or parts of one), every other field at its default."""
    data: dict = {"key": sample.key, "source": sample.source, "provenance": sample.provenance}
    for declared in names:
        field, _, part = declared.partition(".")
        value = getattr(sample, field)
        if not part:
            data[field] = value
        elif isinstance(value, dict):
            if part in value:
                data.setdefault(field, {})[part] = value[part]
        elif value is not None:
            data.setdefault(field, {})[part] = getattr(value, part)
    return Sample.model_validate(data)


def value(sample: Sample, declared: str):
    """The value ``declared`` names in ``sample``; an image by its content digest (runs write them to
    different packs)."""
    field, _, part = declared.partition(".")
    v = getattr(sample, field)
    if part:
        v = v.get(part) if isinstance(v, dict) else getattr(v, part, None) if v is not None else None
    return v.digest if isinstance(v, BlobRef) else v


def _inputs(run, name: str, recipe: str) -> list[Sample]:
    """Two samples the stage's upstream kept in the run, that the stage kept too (so they are
    processed to the end)."""
    order = load_pipeline(recipe=recipe)
    up = order[order.index(name) - 1]
    kept_here = {s.key for p in (run / "data" / name).glob("*.parquet") for s in _rows(p)}
    rows = [s for p in sorted((run / "data" / up).glob("*.parquet")) for s in _rows(p)]
    picked = [s for s in rows if s.key in kept_here or name == "export"][:2]
    assert picked, f"the run kept nothing at '{name}'"
    return picked


def _rows(path) -> list[Sample]:
    return [] if path.name.endswith(".rejected.parquet") else read_rows(path, Sample)


def _process(stage, samples: list[Sample], run, pack_dir) -> list:
    """What the stage makes of ``samples``: the samples out, or for the sink the members it writes."""
    if isinstance(stage, SinkStage):
        return [[(m, data) for m, data, _ in stage.sample_members(s)] for s in samples]
    io = UnitIO(unit="u", out=run, artifacts=ArtifactPack(pack_dir, f"{len(list(pack_dir.iterdir()))}.tar"))
    return stage.process_batch(samples, io)


def violations(cls, run, tmp_path, recipe: str = "sa1b", params: dict | None = None) -> list[str]:
    """How stage class ``cls`` breaks its declared contract on inputs from ``run`` (empty: it keeps it);
    ``params`` override the tiny spec's."""
    name = cls.name
    spec = load_spec(name, "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, **(params or {})}})
    config = RunConfig(out=run, input=run, seed=0, profile="tiny", recipe=recipe)
    stage = cls(spec, config)
    stage.setup()
    try:
        samples = _inputs(run, name, recipe)
        full = _process(stage, samples, run, tmp_path)
        try:
            stripped = _process(
                stage, [only(s, cls.reads + cls.reads_if_present) for s in samples], run, tmp_path
            )
        except Exception as e:  # a read it did not declare, found missing
            return [f"{name} fails on samples holding only its declared reads: {e!r}"]
    finally:
        stage.teardown()
    if isinstance(stage, SinkStage):
        return [] if full == stripped else [f"{name} writes other members from its declared reads only"]
    found = []
    for before, a, b in zip(samples, full, stripped, strict=True):
        assert a.rejection is None, f"{name} kept {a.key} in the run: {a.rejection}"
        if b.rejection != a.rejection:
            found.append(f"{name} rejects {a.key} holding only its declared reads: {b.rejection}")
        for declared in cls.writes:
            if value(a, declared) != value(b, declared):
                found.append(f"{name} writes {declared} of {a.key} otherwise from its declared reads only")
            if value(a, declared) == value(before, declared):
                found.append(f"{name} declares it writes {declared}, and left it as it was in {a.key}")
    return found


STAGE_NAMES = [n for n in load_pipeline() if not issubclass(STAGES[n], SourceStage)]


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_a_stage_needs_only_what_it_declares(name, tiny_run, tmp_path, torch_one_thread):
    assert violations(STAGES[name], tiny_run, tmp_path) == []


PAIR_STAGE_NAMES = [n for n in load_pipeline(recipe="pairs") if not issubclass(STAGES[n], SourceStage)]
# The tiny profile's random SAM never decides (min_sam_iou 1.0), so segment would leave the target as
# the difference made it: here SAM's mask is taken, so the target segment writes is its own.
PAIR_PARAMS = {"segment": {"min_sam_iou": 0.0}}


@pytest.mark.parametrize("name", PAIR_STAGE_NAMES)
def test_a_pairs_stage_needs_only_what_it_declares(name, pairs_run, tmp_path, torch_one_thread):
    found = violations(STAGES[name], pairs_run, tmp_path, recipe="pairs", params=PAIR_PARAMS.get(name))
    assert found == []


def test_a_wrong_declaration_is_found(tiny_run, tmp_path):
    """The check above can fail: a read left out and a write never made are both found."""
    from groundedit.stages.select import SelectStage

    class ForgetsCandidates(SelectStage):
        reads = ("key", "source")

    class ClaimsTags(SelectStage):
        writes = (*SelectStage.writes, "tags")

    assert any("rejects" in v or "otherwise" in v for v in violations(ForgetsCandidates, tiny_run, tmp_path))
    found = violations(ClaimsTags, tiny_run, tmp_path)
    assert {
        f"select declares it writes tags, and left it as it was in {k}" for k in _keys(tiny_run, "select")
    } <= set(found)


def _keys(run, name: str) -> list[str]:
    return [s.key for s in _inputs(run, name, "sa1b")]
