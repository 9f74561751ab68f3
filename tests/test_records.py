from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from groundedit.formats.schema import MANIFESTS_DIR, SCHEMAS, render
from groundedit.records import CoT, ExportRecord, Rejection, Sample


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schemas_are_current(name):
    assert (MANIFESTS_DIR / name).read_text() == render(SCHEMAS[name]), "run `make schema`"


def test_cot_uses_the_papers_keys():
    cot = CoT.model_validate(
        {
            "1_Scene_Description": "a",
            "2_Target_Localization": "b",
            "3_Editing_Description": "c",
            "4_Post_Edit_Description": "d",
        }
    )
    assert list(cot.model_dump(by_alias=True)) == [
        "1_Scene_Description",
        "2_Target_Localization",
        "3_Editing_Description",
        "4_Post_Edit_Description",
    ]


def _export_doc(**over):
    doc = {
        "key": "sa_1",
        "source": {
            "dataset": "sa1b",
            "image_id": "1",
            "file_name": "sa_1.jpg",
            "width": 10,
            "height": 10,
            "original_width": 20,
            "original_height": 20,
        },
        "target": {
            "label": "",
            "candidate_source": "sa1b",
            "box_xyxy": [1, 2, 3, 4],
            "box_1000": [[100, 200], [300, 400]],
            "area": 3,
            "score": 0.9,
            "mask": "mask.png",
        },
        "tags": [],
        "tags_zh": [],
        "edit_type": None,
        "instructions": None,
        "cot": None,
        "scores": {},
        "members": ["json"],
        "provenance": [],
    }
    doc.update(over)
    return doc


def test_export_record_is_strict():
    import json

    ExportRecord.model_validate_json(json.dumps(_export_doc()))
    with pytest.raises(ValidationError):
        ExportRecord.model_validate_json(json.dumps(_export_doc(extra_field=1)))
    with pytest.raises(ValidationError):
        ExportRecord.model_validate_json(json.dumps(_export_doc(edit_type="recolour")))
    bad = _export_doc()
    bad["target"]["box_xyxy"] = ["1", 2, 3, 4]
    with pytest.raises(ValidationError):
        ExportRecord.model_validate_json(json.dumps(bad))
    unlabelled = _export_doc()
    unlabelled["target"]["label"] = None  # a label is a string in every run ("" when none matched)
    with pytest.raises(ValidationError, match="label"):
        ExportRecord.model_validate_json(json.dumps(unlabelled))


def test_reject_returns_a_marked_copy():
    from groundedit.records import BlobRef, Source

    s = Sample(
        key="k",
        source=Source(
            dataset="images", image_id="k", file_name="k.jpg", width=1, height=1, image=BlobRef(path="/x")
        ),
    )
    r = s.reject("select", "no_eligible_target", "none")
    assert s.rejection is None and r.rejection == Rejection(
        stage="select", reason="no_eligible_target", detail="none"
    )


def test_export_record_carries_chinese_tags_index_for_index_or_none():
    from groundedit.records import Source, Tag
    from groundedit.stages.export import export_record

    base = Sample.model_validate(
        {
            "key": "sa_1",
            "source": Source(
                dataset="sa1b", image_id="1", file_name="sa_1.jpg", width=10, height=10, image={"path": "/x"}
            ),
            "target": {
                "id": "c0",
                "source": "sa1b",
                "box_xyxy": (1, 2, 3, 4),
                "mask": {"size": (10, 10), "counts": "x"},
                "area": 3,
                "score": 0.9,
            },
        }
    )
    zh = base.model_copy(
        update={"tags": [Tag(name="dog", score=0.9, name_zh="狗"), Tag(name="car", score=0.8, name_zh="车")]}
    )
    assert export_record(zh, ["json"]).tags_zh == ["狗", "车"]
    en = base.model_copy(update={"tags": [Tag(name="dog", score=0.9), Tag(name="car", score=0.8)]})
    record = export_record(en, ["json"])
    assert record.tags == ["dog", "car"] and record.tags_zh == []
    with pytest.raises(ValidationError):
        ExportRecord.model_validate_json(
            json.dumps({k: v for k, v in _export_doc().items() if k != "tags_zh"})
        )
