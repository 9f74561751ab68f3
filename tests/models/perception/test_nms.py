"""Box IoU, class-agnostic NMS and tight mask boxes on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.perception.nms import box_area, box_iou, mask_box, nms


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 4 / 100]])


def test_degenerate_boxes_have_zero_area_and_iou():
    assert box_area(np.array([[5, 5, 3, 9]]))[0] == 0
    assert box_iou([[5, 5, 5, 5]], [[5, 5, 5, 5]])[0, 0] == 0


def test_nms_suppresses_overlaps_above_threshold_regardless_of_class():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: best
            [1, 0, 11, 10],  # 1: IoU 9/11 with 0 -> suppressed
            [20, 20, 30, 30],  # 2: separate
            [5, 0, 15, 10],  # 3: IoU 1/3 with 0 -> kept at 0.5
            [21, 20, 31, 30],  # 4: IoU 9/11 with 2 -> suppressed
        ]
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    # Box 4 outranks 2, so 4 survives and 2 is suppressed.
    assert nms(boxes, scores, 0.5).tolist() == [4, 0, 3]
    assert nms(boxes, scores, 0.3).tolist() == [4, 0]


def test_nms_iou_equal_to_threshold_is_kept_and_ties_keep_input_order():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])  # IoU exactly 1/3
    assert nms(boxes, np.array([0.5, 0.5]), 1 / 3).tolist() == [0, 1]
    assert nms(boxes, np.array([0.5, 0.5]), 0.33).tolist() == [0]


def test_nms_of_nothing():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_mask_box_is_the_tight_pixel_edge_box():
    mask = np.zeros((6, 8), dtype=bool)
    mask[2:5, 3] = True
    mask[4, 6] = True
    assert mask_box(mask) == (3.0, 2.0, 7.0, 5.0)
    assert mask_box(np.zeros((4, 4), dtype=bool)) is None


@pytest.mark.parametrize("shape", [(1, 1), (3, 7)])
def test_full_mask_box_is_the_image(shape):
    assert mask_box(np.ones(shape, dtype=bool)) == (0.0, 0.0, float(shape[1]), float(shape[0]))
