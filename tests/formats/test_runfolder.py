"""One module owns every path inside a run folder."""

from __future__ import annotations

import ast
from pathlib import Path

import groundedit
from groundedit.formats import runfolder
from groundedit.formats.runfolder import RunFolder, producer_of, unit_files, unit_of

PACKAGE = Path(groundedit.__file__).resolve().parent
# The names runfolder.py gives the parts of a run folder: joining one of them to a path anywhere else
# spells a run-folder path a second time.
NAMES = {
    runfolder.MANIFESTS,
    runfolder.COMMITS,
    runfolder.DATA,
    runfolder.SHARDS,
    runfolder.REJECTED,
    runfolder.REPORT,
    runfolder.EVAL,
    runfolder.LOGS,
    runfolder.RUN_JSON,
    runfolder.LOCK,
    runfolder.PLAN,
    runfolder.PLAN_INFO,
}
OWNERS = {"formats/runfolder.py", "formats/shards.py"}
OTHER_FOLDERS = {"formats/schema.py"}  # the repository's manifests/ (JSON Schemas), not a run's
NOT_RUN_FOLDERS = {"train"}  # training writes its own folder (--out of `groundedit train`)


def test_no_other_module_joins_a_run_folder_name_to_a_path():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWNERS | OTHER_FOLDERS or rel.split("/")[0] in NOT_RUN_FOLDERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                right = node.right
                if isinstance(right, ast.Constant) and right.value in NAMES:
                    found.append(f"{rel}:{node.lineno} / {right.value!r}")
    assert found == []


def test_unit_files_and_back():
    files = unit_files("render", "sa_000000.tar-00001")
    assert files.all() == (
        "data/render/sa_000000.tar-00001.parquet",
        "data/render/sa_000000.tar-00001.rejected.parquet",
        "data/render/sa_000000.tar-00001.tar",
    )
    assert {unit_of(Path(f).name) for f in files.all()} == {"sa_000000.tar-00001"}
    assert unit_of(".sa_000000.tar-00001.parquet.tmp-12") is None and unit_of("notes.txt") is None
    assert producer_of(files.artifacts) == "render"
    assert producer_of("/photos/sa_1.jpg") is None and producer_of("shards/groundedit-000000.tar") is None


def test_summaries_are_the_stage_files_of_manifests(tmp_path):
    run = RunFolder(tmp_path)
    for p in (run.run_json, run.summary("ingest"), run.summary("export"), run.plan_info, run.lock):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    assert sorted(p.name for p in run.summaries()) == ["export.json", "ingest.json"]
    assert run.commit("tag", "u") == tmp_path / "commits" / "tag" / "u.json"
    assert run.failure("tag", "u") == tmp_path / "commits" / "tag" / "u.failed.json"
