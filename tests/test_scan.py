from __future__ import annotations

from groundedit.fixtures import write_sa1b_fixture
from groundedit.scan import make_key, plan_units, scan_input


def test_keys_have_no_dots():
    assert make_key("photo.v2.final") == "photo_v2_final"
    assert make_key("a/b c.d") == "a_b_c_d"


def test_tar_and_folder_inputs(tmp_path):
    write_sa1b_fixture(tmp_path / "tars", images=5, images_per_tar=3)
    (tmp_path / "tars" / "plain").mkdir()
    (tmp_path / "tars" / "plain" / "cat.photo.png").write_bytes(b"x")
    (tmp_path / "tars" / "plain" / "notes.txt").write_text("ignored")
    groups = scan_input(tmp_path / "tars")
    names = [g for g, _ in groups]
    assert names == ["sa_000000", "sa_000001", "plain"]
    first = groups[0][1]
    assert [e.key for e in first] == ["sa_1", "sa_2", "sa_3"]
    assert all(e.dataset == "sa1b" and e.annotation and e.image.offset for e in first)
    (plain,) = groups[2][1]
    assert plain.dataset == "images" and plain.annotation is None and plain.key == "plain_cat_photo"


def test_units_and_limit(tmp_path):
    write_sa1b_fixture(tmp_path, images=7, images_per_tar=7)
    units = plan_units(tmp_path, unit_size=3)
    assert [(u, len(e)) for u, e in units] == [
        ("sa_000000-00000", 3),
        ("sa_000000-00001", 3),
        ("sa_000000-00002", 1),
    ]
    assert sum(len(e) for _, e in plan_units(tmp_path, unit_size=3, limit=4)) == 4


def test_orphan_annotation_and_duplicate_keys_are_flagged(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sa_9.json").write_text("{}")
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "b" / "x.jpg").write_bytes(b"2")
    entries = [e for _, es in plan_units(tmp_path, unit_size=10) for e in es]
    errors = {e.key: e.error for e in entries}
    assert errors["sa_9"] == "image_missing"
    assert errors["a_x"] is None and errors["b_x"] is None  # plain photos: the folder keeps them apart


def test_duplicate_sa1b_images_are_flagged(tmp_path):
    write_sa1b_fixture(tmp_path / "one", images=2, images_per_tar=2)
    write_sa1b_fixture(tmp_path / "two", images=2, images_per_tar=2)
    entries = [e for _, es in plan_units(tmp_path, unit_size=10) for e in es]
    assert [e.error for e in entries] == [None, None, "duplicate_key", "duplicate_key"]
    assert len({e.key for e in entries}) == 4
