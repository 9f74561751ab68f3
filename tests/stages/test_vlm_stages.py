"""The VLM stages against scripted backends: the right overlay reaches the right prompt, invalid
answers are retried then rejected with their raw text, and nothing invalid reaches the shards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows
from groundedit.models.chat import load_prompt
from groundedit.records import Sample
from groundedit.specs import load_spec, stages_dir
from groundedit.stages.instruct import InstructStage, draw_edit_type
from groundedit.stages.qc import QcStage
from groundedit.stages.rewrite import RewriteStage
from groundedit.stages.saliency import SaliencyStage

GOOD_INSTRUCTION = {
    "Editing_Type": "{t}",
    "Editing_Instruction": "Turn the second cup from the left green.",
    "CoT": {
        "1_Scene_Description": "A table with four cups.",
        "2_Target_Localization": "The second cup from the left, white with a thin handle.",
        "3_Editing_Description": "Recolor that cup green.",
        "4_Post_Edit_Description": "The cup is green; the rest is unchanged.",
    },
}


class ScriptedBackend:
    """Replies from a script, in order, recording every request it sees."""

    model_id = "scripted"

    def __init__(self, model=None, script=(), **_):
        self.script = list(script)
        self.requests = []

    def setup(self):
        pass

    def teardown(self):
        pass

    def generate(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            reply = self.script[(len(self.requests) - 1) % len(self.script)]
            out.append(reply(r) if callable(reply) else reply)
        return out


@pytest.fixture(scope="module")
def selected(sa1b_input, tmp_path_factory, run_pipeline):
    out = tmp_path_factory.mktemp("vlm")
    from groundedit.specs import load_pipeline

    order = load_pipeline()
    for stage in order[: order.index("select") + 1]:
        run_pipeline(sa1b_input, out, stage=stage)
    samples = [
        s for p in sorted((out / "data" / "select").glob("*-?????.parquet")) for s in read_rows(p, Sample)
    ]
    return out, samples


def _stage(cls, out, backend, **params):
    spec = load_spec(cls.name, "tiny")
    spec = spec.model_copy(update={"params": {**spec.params, **params}})
    stage = cls(spec, RunConfig(out=out, input=out, seed=0, profile="tiny"))
    stage.backend, stage.template = backend, load_prompt(spec.prompt)
    return stage


def _red_box_outline(img: np.ndarray, box) -> bool:
    x1, y1, x2, y2 = (int(v) for v in box)
    return bool((img[y1, x1:x2] == [255, 0, 0]).all() and (img[y1:y2, x2 - 1] == [255, 0, 0]).all())


def test_saliency_sees_the_red_mask_and_keeps_ones(selected):
    out, samples = selected
    backend = ScriptedBackend(script=['{"answer":1}', '{"answer":0}'])
    results = _stage(SaliencyStage, out, backend, drop_salient=True).process_batch(samples[:4], io=None)
    img = np.asarray(backend.requests[0].images[0]).astype(int)
    from groundedit.image import masks

    mask = masks.decode(samples[0].target.mask)
    assert (img[mask][:, 0] >= 127).all(), "target under a red tint"
    assert not _red_box_outline(img.astype(np.uint8), samples[0].target.box_xyxy), "mask only, no box"
    assert [r.rejection is None for r in results] == [True, False, True, False]
    assert results[1].rejection.reason == "salient_or_poorly_masked" and results[0].scores.saliency_keep == 1
    assert results[0].provenance[-1].sampling["seed"] == backend.requests[0].sampling.seed


def test_saliency_without_dropping_records_the_verdict(selected):
    """The tiny profile's setting: a 0 is recorded, the sample is kept."""
    out, samples = selected
    assert load_spec("saliency", "tiny").params["drop_salient"] is False
    assert load_spec("saliency", "paper").params["drop_salient"] is True
    backend = ScriptedBackend(script=['{"answer":1}', '{"answer":0}'])
    results = _stage(SaliencyStage, out, backend).process_batch(samples[:2], io=None)
    assert [r.rejection for r in results] == [None, None]
    assert [r.scores.saliency_keep for r in results] == [1, 0]
    assert all(r.provenance[-1].stage == "saliency" for r in results)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "invalid_json"),
        ('{"Editing_Type": "add", "Instruction": "x"}', "wrong_keys"),
        (
            json.dumps(GOOD_INSTRUCTION).replace("The second cup", "The object in the red box"),
            "mentions_marking",
        ),
    ],
)
def test_instruct_retries_then_rejects_with_raw_text(selected, bad, reason):
    out, samples = selected
    backend = ScriptedBackend(
        script=[lambda r: bad.replace("{t}", r.user.split("Edit type: ")[1].split("\n")[0])]
    )
    (result,) = _stage(InstructStage, out, backend).process_batch(samples[:1], io=None)
    assert len(backend.requests) == 3, "bounded retries (max_attempts)"
    assert len({r.sampling.seed for r in backend.requests}) == 3, "a new seed each try"
    assert result.rejection.reason == reason and result.rejection.raw is not None
    assert "after 3 attempts" in result.rejection.detail


def test_instruct_sees_the_red_box_and_gets_its_drawn_type(selected):
    out, samples = selected

    def good(r):
        t = r.user.split("Edit type: ")[1].split("\n")[0]
        return json.dumps(GOOD_INSTRUCTION).replace("{t}", t)

    backend = ScriptedBackend(script=["{bad", good])
    results = _stage(InstructStage, out, backend).process_batch(samples[:3], io=None)
    weights = (
        load_spec("instruct", "tiny").params.get("edit_type_weights")
        or InstructStage.Params().edit_type_weights
    )
    for s, r in zip(samples[:3], results, strict=True):
        assert r.rejection is None, r.rejection
        assert r.edit_type == draw_edit_type(0, s.key, weights)
        assert r.cot.target_localization.startswith("The second cup")
    img = np.asarray(backend.requests[0].images[0])
    assert _red_box_outline(img, samples[0].target.box_xyxy)


def test_rewrite_keeps_both_and_rejects_multiline(selected):
    out, samples = selected
    from groundedit.records import Instructions

    s = samples[0].model_copy(update={"instructions": Instructions(original="Make the cup green.")})
    backend = ScriptedBackend(script=['"Paint the cup green."'])
    (ok,) = _stage(RewriteStage, out, backend).process_batch([s], io=None)
    assert (
        ok.instructions.original == "Make the cup green."
        and ok.instructions.rewritten == "Paint the cup green."
    )
    assert backend.requests[0].images == [] and "Make the cup green." in backend.requests[0].user
    (bad,) = _stage(RewriteStage, out, ScriptedBackend(script=["line one\nline two"])).process_batch(
        [s], None
    )
    assert bad.rejection.reason == "not_one_line"


def test_qc_sees_two_boxed_images_and_applies_thresholds(selected, tmp_path):
    out, samples = selected
    from groundedit.formats.tar import ArtifactPack
    from groundedit.image.codec import encode_jpeg
    from groundedit.image.pixels import source_image
    from groundedit.records import Instructions

    pack = ArtifactPack(out, "data/test/qc.tar")
    s = samples[0]
    rgb = np.asarray(source_image(s))
    refs = {
        "src.jpg": pack.add("a.src.jpg", encode_jpeg(rgb)),
        "edited.jpg": pack.add("a.edited.jpg", encode_jpeg(255 - rgb)),
    }
    pack.commit()
    s = s.model_copy(update={"artifacts": refs, "instructions": Instructions(original="x", rewritten="y")})
    low, bad = (
        '{"RegionEditAccuracy":4.5,"SeamlessQuality":1.5}',
        '{"RegionEditAccuracy":6.0,"SeamlessQuality":3.0}',
    )
    backend = ScriptedBackend(script=[low, bad, bad, bad])  # second sample: three tries, all out of range
    judge = _stage(QcStage, out, backend, min_region_edit_accuracy=3.5, min_seamless_quality=3.5)
    low, out_of_range = judge.process_batch([s, s.model_copy(update={"key": "b"})], None)
    assert low.rejection.reason == "qc_below_threshold" and low.scores.region_edit_accuracy == 4.5
    assert out_of_range.rejection.reason == "out_of_range"
    req = backend.requests[0]
    assert len(req.images) == 2 and "Instruction: y" in req.user
    assert all(_red_box_outline(np.asarray(im), s.target.box_xyxy) for im in req.images)


@pytest.mark.slow
def test_nothing_invalid_reaches_the_shards(sa1b_input, tmp_path, run_pipeline, shard_reader, monkeypatch):
    """Whole pipeline with a scripted instruct backend that mixes invalid and valid answers."""
    from groundedit.models.chat import registry

    def reply(r):
        n = len(r.user) + r.sampling.seed
        t = r.user.split("Edit type: ")[1].split("\n")[0]
        bad = [
            "{oops",
            json.dumps({"Editing_Type": t}),
            json.dumps(GOOD_INSTRUCTION).replace("{t}", t).replace("cup", "red box"),
        ]
        return bad[n % 3] if n % 4 else json.dumps(GOOD_INSTRUCTION).replace("{t}", t)

    monkeypatch.setitem(registry.BACKENDS, "scripted", lambda **kw: ScriptedBackend(script=[reply]))
    specs = tmp_path / "stages"
    shutil.copytree(stages_dir(), specs)
    (specs / "instruct.yaml").write_text(
        (specs / "instruct.yaml").read_text().replace("backend: transformers", "backend: scripted")
    )
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    out = tmp_path / "run"
    run_pipeline(sa1b_input, out)
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    instruct_rejects = [r for r in rejected if r["stage"] == "instruct"]
    assert instruct_rejects and all(r["raw"] for r in instruct_rejects)
    assert {r["reason"] for r in instruct_rejects} <= {"invalid_json", "wrong_keys", "mentions_marking"}
    shards = shard_reader(out)
    assert shards, "some valid answers got through"
    for members in shards.values():
        doc = json.loads(members["json"])
        assert doc["cot"]["2_Target_Localization"].startswith("The second")
        assert "box" not in json.dumps(doc["cot"]) and doc["instructions"]["rewritten"]
