from __future__ import annotations

from pathlib import Path

import pytest

from groundedit.fixtures import write_sa1b_fixture
from groundedit.formats.keys import path_hash
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.scan import group_id, plan_units, scan_input


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
    assert plain.dataset == "images" and plain.annotation is None
    assert plain.key == f"plain_cat_photo_png~{path_hash('plain/cat.photo.png')}"


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
    # plain photos: the folder keeps them apart
    assert errors[f"a_x~{path_hash('a/x.jpg')}"] is None and errors[f"b_x~{path_hash('b/x.jpg')}"] is None


def test_duplicate_sa1b_images_are_flagged(tmp_path):
    write_sa1b_fixture(tmp_path / "one", images=2, images_per_tar=2)
    write_sa1b_fixture(tmp_path / "two", images=2, images_per_tar=2)
    entries = [e for _, es in plan_units(tmp_path, unit_size=10) for e in es]
    assert [e.error for e in entries] == [None, None, "duplicate_key", "duplicate_key"]
    assert len({e.key for e in entries}) == 4
    first, dup = entries[0], entries[2]
    assert (first.key, dup.file_name) == ("sa_1", "sa_1.jpg")
    # the detail names both files: the one that kept the key and this one
    assert f"{tmp_path.resolve()}/one/sa_000000.tar/sa_1.jpg" in dup.error_detail
    assert f"{tmp_path.resolve()}/two/sa_000000.tar/sa_1.jpg" in dup.error_detail
    assert dup.key.startswith("sa_1~")


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
    assert keys["a.jpg"] == "a" and keys["a.png"] == f"a_png~{path_hash('a.png')}"
    assert keys["rocket.jpg"] == "rocket" and keys["rocket.webp"] == f"rocket_webp~{path_hash('rocket.webp')}"
    assert keys["sub/a.jpg"] == f"sub_a~{path_hash('sub/a.jpg')}"
    assert keys["sub/a.jpeg"] == f"sub_a_jpeg~{path_hash('sub/a.jpeg')}"
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
    assert entry_png.file_name == "sa_7.png" and entry_png.annotation is None
    assert entry_png.key == f"sa_7_png~{path_hash('sa_7.png')}"


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
    assert entry.file_name == "photo.v1.jpg" and entry.key == f"photo_v1~{path_hash('photo.v1.jpg')}"


def _run_folder_inside(photos: Path) -> None:
    """A finished run's folder inside ``photos``: its artifacts look like photos and tars of photos."""
    old = photos / "old-run"
    RunConfig(out=old, input=str(photos), profile="tiny", seed=0, limit=None).save()
    (old / "data" / "render").mkdir(parents=True)
    write_sa1b_fixture(old / "data" / "render", images=1, images_per_tar=1)
    (old / "coffee_src.jpg").write_bytes(b"x")


def test_run_folders_inside_the_input_are_never_read(tmp_path):
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    (photos / "trip" / "coffee.jpg").write_bytes(b"x")
    _run_folder_inside(photos)
    starting = photos / "starting-run"  # another run in its first moments: a lock, no run.json yet
    (starting / "manifests").mkdir(parents=True)
    (starting / "manifests" / "run.lock").write_text("{}")
    (starting / "x_src.jpg").write_bytes(b"x")
    own = photos / "run"  # this run's --out, before it has a run.json
    (own / "data").mkdir(parents=True)
    (own / "data" / "coffee_mask.png").write_bytes(b"x")
    entries = [e for _, es in plan_units(photos, unit_size=10, exclude=own) for e in es]
    assert [e.file_name for e in entries] == ["coffee.jpg"]
    # without it, the run's own folder would be input (the other run folder never is)
    entries = [e for _, es in plan_units(photos, unit_size=10) for e in es]
    assert sorted(e.file_name for e in entries) == ["coffee.jpg", "coffee_mask.png"]


def test_an_input_that_is_the_run_folder_or_a_run_folder_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="is the run folder itself"):
        plan_units(tmp_path, unit_size=10, exclude=tmp_path / ".")
    _run_folder_inside(tmp_path)
    with pytest.raises(ValueError, match="is a groundedit run folder"):
        plan_units(tmp_path / "old-run", unit_size=10)
