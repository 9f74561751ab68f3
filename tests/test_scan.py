from __future__ import annotations

from pathlib import Path

from groundedit.fixtures import write_sa1b_fixture
from groundedit.scan import group_id, make_key, plan_units, scan_input


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
    assert names == ["sa_000000.tar", "sa_000001.tar", "plain"]
    first = groups[0][1]
    assert [e.key for e in first] == ["sa_1", "sa_2", "sa_3"]
    assert all(e.dataset == "sa1b" and e.annotation and e.image.offset for e in first)
    (plain,) = groups[2][1]
    assert plain.dataset == "images" and plain.annotation is None and plain.key == "plain_cat_photo"


def test_units_and_limit(tmp_path):
    write_sa1b_fixture(tmp_path, images=7, images_per_tar=7)
    units = plan_units(tmp_path, unit_size=3)
    assert [(u, len(e)) for u, e in units] == [
        ("sa_000000.tar-00000", 3),
        ("sa_000000.tar-00001", 3),
        ("sa_000000.tar-00002", 1),
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


def test_images_sharing_a_stem_are_all_kept(tmp_path):
    for name in ("a.jpg", "a.png", "rocket.webp", "rocket.jpg", "b.PNG"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpeg").write_bytes(b"x")
    (tmp_path / "sub" / "a.jpg").write_bytes(b"x")
    entries = [e for _, es in plan_units(tmp_path, unit_size=10) for e in es]
    assert sorted(e.file_name for e in entries) == sorted(
        ["a.jpg", "a.png", "rocket.webp", "rocket.jpg", "b.PNG", "a.jpeg", "a.jpg"]
    )
    keys = {Path(e.image.path).relative_to(tmp_path.resolve()).as_posix(): e.key for e in entries}
    assert keys["a.jpg"] == "a" and keys["a.png"] == "a_png"
    assert keys["rocket.jpg"] == "rocket" and keys["rocket.webp"] == "rocket_webp"
    assert keys["sub/a.jpg"] == "sub_a" and keys["sub/a.jpeg"] == "sub_a_jpeg"
    assert all(e.error is None for e in entries)
    assert len({e.key for e in entries}) == len(entries)


def test_sa1b_annotation_pairs_with_the_jpg_when_stems_repeat(tmp_path):
    write_sa1b_fixture(tmp_path, images=1, images_per_tar=1)
    folder = tmp_path / "loose"
    folder.mkdir()
    (folder / "sa_7.json").write_text("{}")
    (folder / "sa_7.png").write_bytes(b"x")
    (folder / "sa_7.jpg").write_bytes(b"x")
    (entry_jpg, entry_png) = [e for _, es in plan_units(folder, unit_size=10) for e in es]
    assert entry_jpg.file_name == "sa_7.jpg" and entry_jpg.annotation is not None and entry_jpg.key == "sa_7"
    assert entry_png.file_name == "sa_7.png" and entry_png.annotation is None and entry_png.key == "sa_7_png"


def test_unit_ids_are_unique_for_a_tar_beside_a_folder_of_its_name(tmp_path):
    write_sa1b_fixture(tmp_path, images=2, images_per_tar=2)
    (tmp_path / "sa_000000.tar").rename(tmp_path / "batch.tar")
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "photo.jpg").write_bytes(b"x")
    (tmp_path / "batch_tar").mkdir()
    (tmp_path / "batch_tar" / "other.jpg").write_bytes(b"x")
    (tmp_path / "top.jpg").write_bytes(b"x")
    units = plan_units(tmp_path, unit_size=10)
    ids = [u for u, _ in units]
    assert len(set(ids)) == len(ids) == 4
    assert sum(len(e) for _, e in units) == 5


def test_group_ids_are_injective_and_bounded():
    names = ["batch.tar", "batch", "batch_tar", "a/b", "a_b", "a%2Fb", "@input", "x y", "ü"]
    ids = [group_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert "@input" not in ids  # the input folder's own group cannot be named by a path
    long_a, long_b = group_id("d/" * 200 + "a"), group_id("d/" * 200 + "b")
    assert long_a != long_b and len(long_a) <= 160


def test_single_image_input(tmp_path):
    (tmp_path / "photo.v1.jpg").write_bytes(b"x")
    [(_unit, [entry])] = plan_units(tmp_path / "photo.v1.jpg", unit_size=4)
    assert entry.file_name == "photo.v1.jpg" and entry.key == "photo_v1"
