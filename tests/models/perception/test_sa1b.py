"""Matching grounded objects to SA-1B annotation masks, by box and by mask, from arrays or RLEs."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.perception import GroundedObject, mask_to_rle, match_sa1b_masks
from groundedit.models.perception.sa1b import mask_iou


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _obj(mask, detector_box):
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return GroundedObject("dog", box, 0.9, 0.8, mask, 0.7, detector_box)


@pytest.fixture
def annotations():
    return [_rect(20, 30, 0, 5, 0, 5), _rect(20, 30, 10, 20, 10, 30)]


def test_match_by_box_takes_the_best_annotation_above_threshold(annotations):
    obj = _obj(_rect(20, 30, 12, 18, 12, 25), detector_box=(10.0, 10.0, 28.0, 20.0))  # IoU 0.9 with #1
    [matched] = match_sa1b_masks([obj], annotations, iou_threshold=0.8)
    assert matched.mask_source == "sa1b" and matched.sa1b_index == 1
    assert matched.sa1b_iou == pytest.approx(0.9)
    assert matched.box_xyxy == (10.0, 10.0, 30.0, 20.0)
    np.testing.assert_array_equal(matched.mask, annotations[1])
    assert matched.box_score == obj.box_score and matched.label == obj.label
    [unmatched] = match_sa1b_masks([obj], annotations, iou_threshold=0.95)
    assert unmatched is obj


def test_match_by_mask_uses_the_sam_mask(annotations):
    sam_mask = _rect(20, 30, 0, 5, 0, 4)  # IoU 0.8 with #0
    obj = _obj(sam_mask, detector_box=(10.0, 10.0, 30.0, 20.0))  # the box would pick #1
    [matched] = match_sa1b_masks([obj], annotations, iou_threshold=0.75, by="mask")
    assert matched.sa1b_index == 0 and matched.sa1b_iou == pytest.approx(0.8)
    [by_box] = match_sa1b_masks([obj], annotations, iou_threshold=0.75, by="box")
    assert by_box.sa1b_index == 1


def test_rle_annotations_are_decoded(annotations):
    obj = _obj(_rect(20, 30, 10, 20, 10, 30), detector_box=(10.0, 10.0, 30.0, 20.0))
    [matched] = match_sa1b_masks([obj], [mask_to_rle(m) for m in annotations], iou_threshold=0.99)
    assert matched.sa1b_index == 1 and matched.sa1b_iou == pytest.approx(1.0)


def test_nothing_to_match_and_shape_mismatch(annotations):
    obj = _obj(_rect(20, 30, 0, 5, 0, 5), (0.0, 0.0, 5.0, 5.0))
    assert match_sa1b_masks([obj], [], 0.5) == [obj]
    assert match_sa1b_masks([], annotations, 0.5) == []
    with pytest.raises(ValueError, match="SA-1B masks are"):
        match_sa1b_masks([obj], [np.zeros((5, 5), dtype=bool)], 0.5)


def test_mask_iou():
    a, b = _rect(4, 4, 0, 2, 0, 4), _rect(4, 4, 1, 3, 0, 4)
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0
