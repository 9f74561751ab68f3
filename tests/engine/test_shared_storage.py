"""Every node must see --input and --out: the per-node check and the driver's refusal."""

from __future__ import annotations

import pytest

from groundedit.engine.shared_storage import check_node, one_input_file, unseen


def test_a_node_that_sees_both_passes(tmp_path):
    (tmp_path / "probe").write_text("t0k")
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert check_node(str(tmp_path / "probe"), "t0k", str(tmp_path / "a.jpg")) is None


def test_what_a_node_cannot_see_is_named(tmp_path):
    probe, photo = tmp_path / "probe", tmp_path / "a.jpg"
    assert check_node(str(probe), "t0k", str(photo)).startswith(f"cannot read {probe} (No such file")
    probe.write_text("another run's token")
    assert "other content in" in check_node(str(probe), "t0k", str(photo))
    probe.write_text("t0k")
    assert (
        check_node(str(probe), "t0k", str(photo))
        == f"cannot see the input file {photo} (No such file or directory)"
    )


def test_one_input_file_is_found_without_listing_everything(tmp_path):
    assert one_input_file(tmp_path / "x.jpg") == tmp_path / "x.jpg"  # a file input is itself
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "sa_1.jpg").write_bytes(b"x")
    assert one_input_file(tmp_path) == tmp_path / "a" / "b" / "sa_1.jpg"
    (tmp_path / "top.tar").write_bytes(b"x")
    assert one_input_file(tmp_path) == tmp_path / "top.tar", "a file at the top is taken first"


def test_unseen_lists_the_nodes_that_miss_something_and_removes_its_probe(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"x")
    seen_probes = []

    def two_nodes(fn, probe, token, input_file):
        seen_probes.append(probe)
        # the second node has another folder at --out's path: the same path, other content
        other = tmp_path / "elsewhere" / probe.rsplit("/", 1)[1]
        other.parent.mkdir(exist_ok=True)
        other.write_text("not the token")
        return {
            "10.0.0.1/aaaa": fn(probe, token, input_file),
            "10.0.0.2/bbbb": fn(str(other), token, input_file),
        }

    bad = unseen(two_nodes, tmp_path / "manifests", "storage-probe", tmp_path / "in")
    assert list(bad) == ["10.0.0.2/bbbb"] and "other content" in bad["10.0.0.2/bbbb"]
    (probe,) = seen_probes
    assert ".storage-probe.tmp-" in probe and not (tmp_path / "manifests" / probe).exists()


def test_a_node_that_cannot_see_the_input_stops_the_run_before_any_work(
    spine_stages, sa1b_input, tmp_path, monkeypatch
):
    from groundedit.engine.executors import LocalExecutor
    from groundedit.engine.pipeline import Pipeline, PipelineError
    from groundedit.formats.runconfig import RunConfig

    class TwoNodes(LocalExecutor):
        """This machine, and a node on which --input is not mounted."""

        def on_every_node(self, fn, probe, token, input_file):
            hidden = str(tmp_path / "not-mounted" / input_file.lstrip("/"))
            return {
                **super().on_every_node(fn, probe, token, input_file),
                "10.0.0.9/0badc0de": fn(probe, token, hidden),
            }

    monkeypatch.setenv("GROUNDEDIT_STAGES_DIR", str(spine_stages))
    out = tmp_path / "run"
    config = RunConfig(out=out, input=sa1b_input, seed=0, profile="tiny")
    with pytest.raises(PipelineError) as e:
        Pipeline(config, TwoNodes()).run()
    assert str(e.value).startswith("node 10.0.0.9/0badc0de cannot see the input file ")
    assert "shared filesystem" in str(e.value)
    assert not (out / "data").exists() and not (out / "manifests" / "plan").exists()
    assert not list((out / "manifests").glob(".storage-probe*")), "the probe is removed"
