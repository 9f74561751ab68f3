"""Sample keys: readable, one per file, independent of other files, valid member and file names."""

from __future__ import annotations

import os
import unicodedata

from groundedit.formats.keys import HASH_MARK, MAX_KEY_BYTES, path_hash, photo_key, plain, sample_key
from groundedit.formats.scan import plan_units

NFD_GRACE = unicodedata.normalize("NFD", "grâce.jpg")
# Names a user's folder really holds that an ASCII-only key rule merges: accents (and the same accent
# composed or not), spaces vs underscores, case, folders vs underscores, dots.
ODD_NAMES = [
    "grâce.jpg",
    NFD_GRACE,
    "grèce.jpg",
    "a b.jpg",
    "a_b.jpg",
    "A.jpg",
    "a.jpg",
    "sub dir/p.png",
    "sub_dir_p.png",
    "photo.v2.jpg",
]


def _write(root, names, data=b"x"):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _keys(root) -> dict[str, str]:
    """relative path -> key, for every entry planned from ``root``."""
    entries = [e for _, es in plan_units(root, unit_size=100) for e in es]
    assert all(e.error is None for e in entries), [(e.key, e.error_detail) for e in entries if e.error]
    return {os.path.relpath(e.image.path, root.resolve()): e.key for e in entries}


def test_odd_names_get_distinct_keys_that_case_and_normalisation_keep_apart(tmp_path):
    assert NFD_GRACE != "grâce.jpg"
    _write(tmp_path, ODD_NAMES)
    keys = _keys(tmp_path)
    assert sorted(keys) == sorted(ODD_NAMES)
    assert len(set(keys.values())) == len(ODD_NAMES)
    # A case- and normalisation-insensitive file system (macOS) keeps them apart too.
    assert len({unicodedata.normalize("NFD", k).casefold() for k in keys.values()}) == len(ODD_NAMES)
    # Names that are already keys stay readable as they are; the others say what they were.
    assert keys["grâce.jpg"] == "grâce" and keys["grèce.jpg"] == "grèce"
    assert keys["a_b.jpg"] == "a_b" and keys["a.jpg"] == "a"
    assert keys[NFD_GRACE] == f"grâce~{path_hash(NFD_GRACE)}"
    assert keys["a b.jpg"] == f"a_b~{path_hash('a b.jpg')}"
    assert keys["A.jpg"] == f"a~{path_hash('A.jpg')}"
    assert keys["sub dir/p.png"] == f"sub_dir_p_png~{path_hash('sub dir/p.png')}"
    assert keys["sub_dir_p.png"] == f"sub_dir_p_png~{path_hash('sub_dir_p.png')}"
    assert keys["photo.v2.jpg"] == f"photo_v2~{path_hash('photo.v2.jpg')}"


def test_a_files_key_does_not_depend_on_the_other_files(tmp_path):
    _write(tmp_path / "all", ODD_NAMES)
    together = _keys(tmp_path / "all")
    for i, name in enumerate(ODD_NAMES):
        alone = tmp_path / f"alone{i}"
        _write(alone, [name])
        assert _keys(alone) == {name: together[name]}, name


def test_sa1b_images_are_named_by_their_file_name_wherever_they_are(tmp_path):
    _write(tmp_path / "x", ["sa_5.jpg", "sa_5.json", "Grâce.jpg", "Grâce.json"])
    keys = _keys(tmp_path)
    assert keys["x/sa_5.jpg"] == "sa_5"
    assert keys["x/Grâce.jpg"] == f"grâce~{path_hash('Grâce')}"


def test_keys_are_valid_member_and_file_names():
    hostile = [
        "a.b.c",
        "dir/sub/x",
        "back\\slash",
        "co:lon*?<>|\"'",
        "tab\tnew\nline",
        "😀 emoji",
        "ﬁ ligature",
        "x" * 400,
        "ü" * 400,
        os.fsdecode(b"bad\xff\xfebytes"),  # a Linux name that is not UTF-8
        "",
        "-",
        "~tilde~",
    ]
    for text in hostile:
        key = sample_key(text, text)
        assert "." not in key and "/" not in key and "\\" not in key, key
        assert 0 < len(key.encode("utf-8")) <= MAX_KEY_BYTES, key  # encodes: no lone surrogates
        readable, mark, digest = key.rpartition(HASH_MARK)
        assert all(c in "_-" or unicodedata.category(c)[0] in "LMN" for c in readable), key
        if mark:
            assert digest == path_hash(text)
        else:
            assert key == text and key == plain(text)


def test_plain_names_stay_and_only_plain_names_do():
    for text in ("sa_1", "grâce", "写真", "हिन्दी", "a-b_c9"):
        assert sample_key(text, text) == text
    for text in ("Sa_1", "straße", "a b", "a.b", "x" * (MAX_KEY_BYTES + 1)):
        assert HASH_MARK in sample_key(text, text)
    # no plain key can equal a hashed one: '~' is not a plain character
    assert plain("a~0123456789") == "a_0123456789"


def test_long_names_keep_their_end_and_stay_distinct():
    a = photo_key("deep/" * 60 + "holiday_001.jpg", "deep/" * 60 + "holiday_001.jpg")
    b = photo_key("deep/" * 60 + "holiday_002.jpg", "deep/" * 60 + "holiday_002.jpg")
    assert a != b and len(a.encode()) <= MAX_KEY_BYTES
    assert a.split(HASH_MARK)[0].endswith("deep_holiday_001")


def test_tar_members_are_keyed_by_tar_and_member(tmp_path):
    from groundedit.formats.tar import TarWriter

    for name in ("one.tar", "two.tar"):
        writer = TarWriter(tmp_path / name)
        writer.add("photo.jpg", b"x")
        writer.close()
    keys = _keys(tmp_path)
    assert keys == {
        "one.tar": f"one_photo~{path_hash('one.tar/photo.jpg')}",
        "two.tar": f"two_photo~{path_hash('two.tar/photo.jpg')}",
    }
