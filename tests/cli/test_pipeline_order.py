"""`groundedit run` with a pipeline.yaml whose order cannot work: one error line, nothing written."""

from __future__ import annotations


def test_a_reordered_pipeline_is_refused_at_load_in_one_line(
    stages_copy, sa1b_input, tmp_path, capsys, monkeypatch
):
    from groundedit.cli import main

    order = [
        "ingest",
        "tag",
        "ground",
        "render",
        "select",
        "saliency",
        "instruct",
        "rewrite",
        "edit",
        "qc",
        "export",
    ]
    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(stages_copy(tmp_path / "stages", order=order)))
    out = tmp_path / "run"
    args = ["run", "--input", str(sa1b_input), "--out", str(out), "--profile", "tiny", "--executor", "local"]
    assert main(args) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [
        "error: stages/pipeline.yaml: stage 'render' reads 'target', which 'select' writes after it: "
        "put 'select' before 'render'"
    ]
    assert not out.exists(), "refused before anything is written"
