"""The Hugging Face Features follow the exported record field for field."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pytest
from pydantic import BaseModel

from groundedit.formats.features import IMAGE_COLUMNS, _feature, record_features, shard_features
from groundedit.formats.schema import MANIFESTS_DIR


def _schema_keys(node: dict, defs: dict, path: str = "") -> set[str]:
    """Every property path of a JSON Schema, ``$ref``s and nullable ``anyOf``s followed."""
    if "$ref" in node:
        return _schema_keys(defs[node["$ref"].rsplit("/", 1)[-1]], defs, path)
    for alt in node.get("anyOf", []):
        if alt.get("type") != "null":
            return _schema_keys(alt, defs, path)
    if node.get("type") == "array" and "items" in node and isinstance(node["items"], dict):
        return _schema_keys(node["items"], defs, f"{path}[]")
    keys = set()
    for name, sub in node.get("properties", {}).items():
        keys |= {f"{path}.{name}".lstrip(".")} | _schema_keys(sub, defs, f"{path}.{name}".lstrip("."))
    return keys


def _feature_keys(feature, path: str = "") -> set[str]:
    if isinstance(feature, dict):
        keys = set()
        for name, sub in feature.items():
            p = f"{path}.{name}".lstrip(".")
            keys |= {p} | _feature_keys(sub, p)
        return keys
    if isinstance(feature, datasets.List) and isinstance(feature.feature, dict):
        return _feature_keys(feature.feature, f"{path}[]")
    return set()


def test_features_cover_the_committed_schema():
    schema = json.loads((MANIFESTS_DIR / "export_record.schema.json").read_text())
    assert _feature_keys(dict(record_features())) == _schema_keys(schema, schema.get("$defs", {}))


def test_shard_features_name_every_member():
    f = shard_features()
    assert set(f) == {"__key__", "__url__", *IMAGE_COLUMNS, "json"}
    assert all(isinstance(f[m], datasets.Image) for m in IMAGE_COLUMNS)
    assert f["json"] == dict(record_features())


def test_a_record_with_nulls_encodes_to_the_fixed_types():
    f = record_features()
    doc = {
        "key": "k",
        "source": {
            "dataset": "images",
            "image_id": "k",
            "file_name": "k.jpg",
            "width": 4,
            "height": 3,
            "original_width": 8,
            "original_height": 6,
        },
        "target": {
            "label": "",
            "candidate_source": "sa1b",
            "box_xyxy": [0, 0, 2, 2],
            "box_1000": [[0, 0], [500, 666]],
            "area": 4,
            "score": 1.0,
            "mask": "mask.png",
        },
        "tags": [],
        "edit_type": None,
        "instructions": None,
        "cot": None,
        "scores": {k: None for k in f["scores"]},
        "members": ["json"],
        "provenance": [
            {
                "stage": "ingest",
                "spec_hash": "h",
                "models": [],
                "prompt_hash": None,
                "seed": None,
                "sampling": None,
                "counts": [],
                "version": "0",
            }
        ],
    }
    table = pa.Table.from_pylist([f.encode_example(doc)], schema=f.arrow_schema)
    assert table.schema.field("target").type.field("label").type == pa.string()
    assert table.schema.field("tags").type == pa.list_(pa.string()), "an empty list keeps its type"


def test_a_free_form_dict_has_no_feature():
    class Loose(BaseModel):
        counts: dict[str, int]

    with pytest.raises(TypeError, match="fixed Arrow type"):
        _feature(Loose)
