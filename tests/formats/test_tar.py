from __future__ import annotations

import io
import tarfile

import pytest

from groundedit.formats.tar import (
    ArtifactPack,
    BlobChanged,
    TarWriter,
    normalise_member_name,
    read_blob,
    scan_tar,
    unsafe_member_reason,
)
from groundedit.records import BlobRef


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a.jpg", False),
        ("./a.jpg", False),
        ("d/a.jpg", False),
        ("../x.jpg", True),
        ("a/../../x", True),
        ("/etc/passwd", True),
        ("C:/x.jpg", True),
        ("a..b.jpg", False),
    ],
)
def test_unsafe_member_names(name, unsafe):
    assert (unsafe_member_reason(name) is not None) == unsafe


def test_normalise_strips_dot_slash():
    assert normalise_member_name("././sa_1.jpg") == "sa_1.jpg"


def test_writer_offsets_read_back_and_output_is_deterministic(tmp_path):
    payloads = {"a.txt": b"x" * 700, "b.bin": bytes(range(256)), "c.empty": b""}
    refs = {}
    for target in ("one.tar", "two.tar"):
        w = TarWriter(tmp_path / target)
        for name, data in payloads.items():
            off, size = w.add(name, data)
            refs[name] = BlobRef(path=str(tmp_path / target), member=name, offset=off, size=size)
        w.close()
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    for name, data in payloads.items():
        assert read_blob(refs[name]) == data
    with tarfile.open(tmp_path / "one.tar") as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar} == payloads
    scanned = {m.name: (m.offset, m.size) for m, _ in scan_tar(tmp_path / "one.tar")}
    assert scanned == {n: (r.offset, r.size) for n, r in refs.items()}


def test_scan_flags_unsafe_members(tmp_path):
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        for name in ("ok.jpg", "../evil.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    found = {m.name: reason for m, reason in scan_tar(tmp_path / "t.tar")}
    assert found["ok.jpg"] is None and "'..'" in found["../evil.jpg"]


def test_abort_and_uncommitted_pack_leave_nothing(tmp_path):
    w = TarWriter(tmp_path / "x.tar")
    w.add("a", b"1")
    w.abort()
    pack = ArtifactPack(tmp_path, "data/p.tar")
    ref = pack.add("m", b"payload")
    assert not (tmp_path / "data/p.tar").exists()
    pack.commit()
    assert read_blob(ref, tmp_path) == b"payload"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "p.tar"]


def test_read_blob_checks_length_and_digest(tmp_path):
    pack = ArtifactPack(tmp_path, "data/s/u.tar")
    ref = pack.add("k.png", b"abcdef" * 100)
    pack.commit()
    assert ref.digest and read_blob(ref, tmp_path) == b"abcdef" * 100
    path = tmp_path / "data/s/u.tar"
    data = bytearray(path.read_bytes())
    data[ref.offset] ^= 0xFF  # same length, other bytes: a rewrite the length cannot see
    path.write_bytes(bytes(data))
    with pytest.raises(BlobChanged, match="digest differs"):
        read_blob(ref, tmp_path)
    path.write_bytes(bytes(data[: ref.offset + 10]))
    with pytest.raises(BlobChanged, match="10 bytes where 600 were recorded"):
        read_blob(ref, tmp_path)


def test_rollback_drops_what_a_batch_packed(tmp_path):
    pack = ArtifactPack(tmp_path, "u.tar")
    a = pack.add("a.x", b"a" * 700)
    mark = pack.mark()
    pack.add("b.x", b"b" * 10)
    pack.rollback(mark)
    c = pack.add("c.x", b"c" * 5)
    pack.commit()
    with tarfile.open(tmp_path / "u.tar") as tar:
        assert tar.getnames() == ["a.x", "c.x"]
    assert read_blob(a, tmp_path) == b"a" * 700 and read_blob(c, tmp_path) == b"c" * 5
    empty = ArtifactPack(tmp_path, "v.tar")
    mark = empty.mark()
    empty.add("b.x", b"b")
    empty.rollback(mark)
    empty.commit()
    assert not (tmp_path / "v.tar").exists() and not empty.committed


def _two_member_tar(path, first: str, second: str, data=(b"a" * 600, b"b" * 600)) -> dict[str, BlobRef]:
    writer = TarWriter(path)
    refs = {}
    for name, payload in zip((first, second), data, strict=True):
        offset, size = writer.add(name, payload)
        refs[name] = BlobRef(path=str(path), member=name, offset=offset, size=size)
    writer.close()
    return refs


@pytest.mark.parametrize("long", [False, True])
def test_an_undigested_member_is_checked_against_its_header(tmp_path, long):
    """Input members are read by the offsets a listing recorded, before any digest exists: the
    header in front of the data must name the member (a long name as far as the header holds it:
    its first 100 bytes)."""
    a, b = ("a/" + "d/" * 60 + "x.jpg", "b/" + "d/" * 60 + "x.jpg") if long else ("a.jpg", "b.jpg")
    path = tmp_path / "in.tar"
    refs = _two_member_tar(path, a, b)
    assert read_blob(refs[a]) == b"a" * 600
    _two_member_tar(path, b, a)  # rewritten in place: the same size, the members swapped
    with pytest.raises(BlobChanged, match="names 'b"):
        read_blob(refs[a])
    _two_member_tar(path, a, b, data=(b"a" * 600, b"b" * 100))
    with pytest.raises(BlobChanged, match="says 100 bytes where 600 were listed"):
        read_blob(refs[b])
    with pytest.raises(BlobChanged, match="no tar header"):
        read_blob(refs[a].model_copy(update={"offset": refs[a].offset + 512}))
    digested = refs[a].model_copy(update={"offset": 0, "size": 4, "digest": "0" * 32})
    with pytest.raises(BlobChanged, match="digest differs"):  # digested refs skip the header check
        read_blob(digested)
