"""Official Bagel's edit-parquet rules: rows and the parquet_info file."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groundedit.formats import bagel_parquet as bp


def test_a_row_needs_one_instruction_step_per_image_transition():
    bp.check_row([b"a", b"b"], [["make it red"]])
    bp.check_row([b"a", b"b", b"c"], [["x", "y"], ["z"]])
    for images, texts, message in [
        ([b"a"], [], "at least 2 images"),
        ([b"a", b"b"], [["x"], ["y"]], "images - 1"),
        ([b"a", b"b", b"c"], [["x"]], "images - 1"),
        ([b"a", b"b"], [[]], "non-empty list"),
        ([b"a", b"b"], [["  "]], "non-empty strings"),
        ([b"a", b""], [["x"]], "non-empty bytes"),
    ]:
        with pytest.raises(bp.BagelFormatError, match=message):
            bp.check_row(images, texts)


def test_parquet_info_is_keyed_like_bagels_loader(tmp_path):
    table = pa.table(
        {bp.IMAGE_LIST: [[b"a", b"b"]] * 5, bp.INSTRUCTION_LIST: [[["x"]]] * 5}, schema=bp.SCHEMA
    )
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=2)
    info = bp.parquet_info("/data/edit", [tmp_path / "f.parquet"])
    assert info == {"/data/edit/f.parquet": {bp.NUM_ROW_GROUPS: 3}}
    (tmp_path / "info.json").write_text(json.dumps(info))
    assert bp.read_parquet_info(tmp_path / "info.json") == {"/data/edit/f.parquet": 3}


@pytest.mark.parametrize(
    "doc", ["not json", "[]", "{}", '{"f": 3}', '{"f": {"row_groups": 3}}', '{"f": {"num_row_groups": "3"}}']
)
def test_a_malformed_info_file_is_refused(tmp_path, doc):
    (tmp_path / "info.json").write_text(doc)
    with pytest.raises(bp.BagelFormatError):
        bp.read_parquet_info(tmp_path / "info.json")
