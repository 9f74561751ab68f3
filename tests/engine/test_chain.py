"""The stage chain refuses, at load and in one line, a pipeline order in which a stage reads what no
earlier stage writes (the stages' declared contracts)."""

from __future__ import annotations

import pytest

from groundedit.engine.chain import StageChain, check_contracts
from groundedit.formats.runconfig import RunConfig
from groundedit.specs import SpecError, load_pipeline
from groundedit.stages import STAGES, Stage


def test_the_shipped_pipeline_and_the_model_free_spine_pass():
    check_contracts(load_pipeline(), STAGES)
    check_contracts(["ingest", "select", "render", "export"], STAGES)
    check_contracts(load_pipeline(recipe="pairs"), STAGES, "stages/pairs.yaml")


def test_the_pairs_recipe_names_its_own_file():
    order = ["pair_ingest", "localize", "difference", "export"]
    with pytest.raises(SpecError) as e:
        check_contracts(order, STAGES, "stages/pairs.yaml")
    assert str(e.value) == (
        "stages/pairs.yaml: stage 'localize' reads 'target', which 'difference' writes after it: "
        "put 'difference' before 'localize'"
    )


@pytest.mark.parametrize(
    ("order", "line"),
    [
        (
            ["ingest", "render", "select", "export"],
            "stage 'render' reads 'target', which 'select' writes after it: put 'select' before 'render'",
        ),
        (
            ["ingest", "select", "render", "qc", "export"],
            "stage 'qc' reads 'instructions', which only 'instruct' writes, and the pipeline has no 'instruct'",
        ),
        (
            ["ingest", "select", "render", "edit", "instruct", "export"],
            "stage 'edit' reads 'edit_type', which 'instruct' writes after it: put 'instruct' before 'edit'",
        ),
    ],
)
def test_an_impossible_order_is_one_line_naming_stage_field_and_writer(order, line):
    with pytest.raises(SpecError) as e:
        check_contracts(order, STAGES)
    assert str(e.value) == f"stages/pipeline.yaml: {line}"


class _NeedsAScore(Stage):
    name = "needs"
    reads = ("scores.ega",)

    def process_batch(self, batch, io):
        return batch


class _WritesScores(Stage):
    name = "scores"
    writes = ("scores",)

    def process_batch(self, batch, io):
        return batch


def test_a_part_is_written_by_writing_its_field_or_itself():
    stages = {**STAGES, "needs": _NeedsAScore, "scores": _WritesScores}
    check_contracts(["ingest", "select", "scores", "needs", "export"], stages)
    check_contracts(["ingest", "select", "render", "instruct", "edit", "needs", "export"], stages)
    with pytest.raises(SpecError, match=r"stage 'needs' reads 'scores\.ega', which 'edit' writes after it"):
        check_contracts(["ingest", "select", "render", "needs", "instruct", "edit", "export"], stages)


def test_nobody_writing_a_field_says_so():
    registry = {"ingest": STAGES["ingest"], "needs": _NeedsAScore, "export": STAGES["export"]}
    with pytest.raises(SpecError, match=r"'needs' reads 'scores\.ega', which no stage writes$"):
        check_contracts(["ingest", "needs", "export"], registry)


def test_the_chain_checks_at_load(stages_copy, tmp_path, monkeypatch):
    specs = stages_copy(tmp_path / "stages", order=["ingest", "render", "select", "export"])
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(specs))
    with pytest.raises(SpecError, match="stage 'render' reads 'target'"):
        StageChain(RunConfig(out=tmp_path / "run", input=tmp_path, profile="tiny"))
