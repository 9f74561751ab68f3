"""Generate the JSON Schemas in ``manifests/`` from the pydantic models (``make schema``).

A test checks the committed files are current, so the schema a consumer reads is the one the code
validates against.
"""

from __future__ import annotations

import json
from pathlib import Path

from groundedit.formats.commits import UnitCommit, UnitFailure
from groundedit.formats.manifest import StageSummary
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.shards import ShardStats
from groundedit.records import ExportRecord

MANIFESTS_DIR = Path(__file__).resolve().parents[2] / "manifests"
SCHEMAS = {
    "export_record.schema.json": ExportRecord,
    "stage_summary.schema.json": StageSummary,
    "unit_commit.schema.json": UnitCommit,
    "unit_failure.schema.json": UnitFailure,
    "shard_stats.schema.json": ShardStats,
    "run_config.schema.json": RunConfig,
}


def render(model) -> str:
    # what is written: fields a record carries but never saves (RunConfig's per-invocation ones) are left out
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(directory: Path = MANIFESTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMAS.items():
        (directory / name).write_text(render(model))
        print(f"wrote {directory / name}")


if __name__ == "__main__":
    main()
