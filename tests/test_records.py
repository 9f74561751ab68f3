from __future__ import annotations

import pytest
from pydantic import ValidationError

from groundedit.records import CoT, ExportRecord, Rejection, Sample
from groundedit.schema import MANIFESTS_DIR, SCHEMAS, render


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
