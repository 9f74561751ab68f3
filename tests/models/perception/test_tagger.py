"""RAM++ tagging on the tiny model: well-formed probabilities, per-class thresholds, stable output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from groundedit.models.perception import Tagger
from groundedit.models.perception.ram_vocab import read_tag_list, read_thresholds
from groundedit.models.perception.tiny import TINY_TAGS


def test_probabilities_are_well_formed(tagger, images):
    probs = tagger.probabilities(images)
    assert probs.shape == (len(images), len(TINY_TAGS))
    assert probs.dtype == np.float32
    assert np.all((probs > 0) & (probs < 1))
    # Random weights still see the image: different images, different probabilities.
    assert not np.allclose(probs[0], probs[2])


def test_tags_are_those_above_their_own_threshold_most_probable_first(tagger, images):
    probs = tagger.probabilities(images)
    thresholds = tagger.thresholds
    assert len(set(thresholds.tolist())) > 1, "tiny thresholds must differ per class for this test"
    for row, tags in zip(probs, tagger.tag(images), strict=True):
        expected = {TINY_TAGS[i] for i in np.flatnonzero(row > thresholds)}
        assert {t for t, _ in tags} == expected
        scores = [p for _, p in tags]
        assert scores == sorted(scores, reverse=True)
        for tag, p in tags:
            i = TINY_TAGS.index(tag)
            assert p == pytest.approx(row[i]) and p > thresholds[i]
        # Threshold 0 always passes, 1 never does: both outcomes occur on every image.
        assert {TINY_TAGS[i] for i in np.flatnonzero(thresholds == 0.0)} <= expected
        assert not {TINY_TAGS[i] for i in np.flatnonzero(thresholds == 1.0)} & expected


def test_max_tags_keeps_the_most_probable(tagger, images):
    full = tagger.tag(images)
    capped = tagger.tag(images, max_tags=2)
    assert [tags[:2] for tags in full] == capped


def test_pil_and_array_inputs_agree_and_output_is_deterministic(tagger, images):
    as_pil = [Image.fromarray(im) for im in images]
    np.testing.assert_array_equal(tagger.probabilities(as_pil), tagger.probabilities(images))
    assert tagger.tag([]) == []


def test_files_and_loader_agree(tiny_paths):
    assert read_tag_list(tiny_paths["ram_tags"]) == list(TINY_TAGS)
    assert len(read_thresholds(tiny_paths["ram_thresholds"], len(TINY_TAGS))) == len(TINY_TAGS)


def test_tag_files_and_config_default_to_those_beside_the_checkpoint(tiny_paths, tagger, images):
    beside = Tagger.from_pretrained(tiny_paths["ram_checkpoint"], device="cpu")
    assert beside.tags == tagger.tags and beside.model.config == tagger.model.config
    np.testing.assert_array_equal(beside.thresholds, tagger.thresholds)
    np.testing.assert_array_equal(beside.probabilities(images[:1]), tagger.probabilities(images[:1]))


def test_short_threshold_files_default_to_0_68_and_long_ones_fail(tmp_path):
    path = tmp_path / "thresholds.txt"
    path.write_text("0.5\n0.9\n")
    np.testing.assert_allclose(read_thresholds(path, 4), [0.5, 0.9, 0.68, 0.68])
    with pytest.raises(ValueError, match="2 thresholds for 1 tags"):
        read_thresholds(path, 1)


def test_threshold_array_must_match_the_model(tagger):
    with pytest.raises(ValueError, match="thresholds 2"):
        Tagger(tagger.model, tagger.tags, np.zeros(2, np.float32), device="cpu")


def test_non_rgb_arrays_are_refused(tagger):
    with pytest.raises(ValueError, match="RGB uint8"):
        tagger.tag([np.zeros((8, 8), dtype=np.uint8)])


def test_chinese_names_come_with_the_vocabulary_when_it_has_them(tiny_paths, tagger, tmp_path):
    from groundedit.models.perception.tiny import TINY_TAGS_CHINESE

    assert tagger.chinese_name("dog") == TINY_TAGS_CHINESE[TINY_TAGS.index("dog")] == "狗"
    # The same checkpoint and lists without the Chinese file: tags have no Chinese names.
    bare = tmp_path / "bare"
    bare.mkdir()
    for key in ("ram_checkpoint", "ram_tags", "ram_thresholds", "ram_config"):
        (bare / tiny_paths[key].name).write_bytes(tiny_paths[key].read_bytes())
    plain = Tagger.from_pretrained(bare / tiny_paths["ram_checkpoint"].name, device="cpu")
    assert plain.tags == tagger.tags and plain.chinese_name("dog") is None
    (bare / "zh.txt").write_text("狗\n")
    with pytest.raises(ValueError, match="1 Chinese names for 12 tags"):
        Tagger.from_pretrained(bare / tiny_paths["ram_checkpoint"].name, chinese_file=bare / "zh.txt")


def test_sizes_are_read_from_the_checkpoint_when_no_config_lies_beside_it(tiny_paths, tagger, tmp_path):
    alone = tmp_path / "ram_plus_swin_large_14m.pth"
    alone.write_bytes(tiny_paths["ram_checkpoint"].read_bytes())
    loaded = Tagger.from_pretrained(alone, tiny_paths["ram_tags"], tiny_paths["ram_thresholds"], device="cpu")
    assert loaded.model.config == tagger.model.config
    (tmp_path / "ram_tag_list.txt").write_text("a\nb\nc\nd\ne\n")
    (tmp_path / "ram_tag_list_threshold.txt").write_text("0.5\n" * 5)
    with pytest.raises(ValueError, match="not a multiple of the tag list's 5 tags"):
        Tagger.from_pretrained(alone, device="cpu")  # a foreign tag list beside the checkpoint
