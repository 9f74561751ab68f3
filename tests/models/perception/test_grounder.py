"""Grounding on the tiny models: geometry, thresholds, drops, chunking, determinism, SA-1B option."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.perception import TINY_GROUNDING, Grounder, rle_to_mask
from groundedit.models.perception.grounding_dino import GroundingDinoDetector
from groundedit.models.perception.nms import box_iou, mask_box


def test_objects_are_well_formed(grounded, images, image_tags):
    assert len(grounded) == len(images)
    for result, image, tags in zip(grounded, images, image_tags, strict=True):
        h, w = image.shape[:2]
        for obj in result.objects:
            assert obj.label in tags
            assert obj.mask.shape == (h, w) and obj.mask.dtype == bool
            # The box is the mask's tight box, hence inside the image.
            assert obj.box_xyxy == mask_box(obj.mask)
            x0, y0, x1, y1 = obj.box_xyxy
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            dx0, dy0, dx1, dy1 = obj.detector_box_xyxy
            assert 0 <= dx0 <= dx1 <= w and 0 <= dy0 <= dy1 <= h
            assert obj.box_score > TINY_GROUNDING["box_threshold"]
            assert obj.text_score > TINY_GROUNDING["text_threshold"]
            assert obj.mask_score >= TINY_GROUNDING["min_mask_score"]
            assert obj.mask_source == "sam"


def test_some_candidates_pass_and_some_are_dropped_with_reasons(grounded):
    assert sum(len(r.objects) for r in grounded) > 0
    dropped = sum((r.dropped for r in grounded), start=type(grounded[0].dropped)())
    assert sum(dropped.values()) > 0
    allowed = {
        "no_tag_above_text_threshold",
        "nms_suppressed",
        "over_max_objects",
        "low_mask_score",
        "empty_mask",
        "tag_too_long",
    }
    assert set(dropped) <= allowed


def test_nms_and_object_cap_hold(grounded):
    for result in grounded:
        assert len(result.objects) <= TINY_GROUNDING["max_objects"]
        boxes = np.array([o.detector_box_xyxy for o in result.objects]).reshape(-1, 4)
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0)
        assert (iou <= TINY_GROUNDING["nms_iou"]).all()


def test_grounding_is_deterministic(grounder, images, image_tags, grounded):
    again = grounder.ground(images, image_tags)
    for a, b in zip(grounded, again, strict=True):
        assert a.dropped == b.dropped
        assert [(o.label, o.box_xyxy, o.box_score, o.mask_score) for o in a.objects] == [
            (o.label, o.box_xyxy, o.box_score, o.mask_score) for o in b.objects
        ]
        for oa, ob in zip(a.objects, b.objects, strict=True):
            np.testing.assert_array_equal(oa.mask, ob.mask)


def test_small_token_limit_chunks_prompts_and_still_grounds(grounder, images):
    detector = grounder.detector
    tight = GroundingDinoDetector(
        detector.model, detector.tokenizer, detector.settings, device="cpu", max_text_tokens=6
    )
    tags = [["teddy bear", "dog", "traffic light", "person", "zebra crossing sign"]]
    detections = tight.detect(images[:1], tags, box_threshold=0.5, text_threshold=0.3)
    found, dropped = detections[0]
    assert dropped["tag_too_long"] == 1  # "zebra crossing sign" needs more than 6 tokens with [CLS]/[SEP]
    assert found and {d.tag for d in found} <= set(tags[0][:4])
    assert len({d.tag for d in found}) > 1  # tags from different prompts came back


def test_images_without_tags_give_no_objects(grounder, images):
    results = grounder.ground(images[:2], [[], ["dog"]])
    assert results[0].objects == [] and sum(results[0].dropped.values()) == 0
    assert all(o.label == "dog" for o in results[1].objects)
    assert grounder.ground([], []) == []
    with pytest.raises(ValueError, match="2 images but 1 tag lists"):
        grounder.ground(images[:2], [["dog"]])


def test_sa1b_masks_replace_matching_sam_masks(grounder, images, image_tags):
    image = images[0]
    h, w = image.shape[:2]
    base = grounder.ground([image], image_tags[:1])[0].objects
    assert base, "need at least one object on the first synthetic image"
    x0, y0, x1, y1 = (round(v) for v in base[0].detector_box_xyxy)
    annotation = np.zeros((h, w), dtype=bool)
    annotation[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)] = True
    matcher = Grounder(grounder.detector, grounder.segmenter, **{**TINY_GROUNDING, "sa1b_iou_threshold": 0.5})
    matched = matcher.ground([image], image_tags[:1], sa1b_masks=[[annotation]])[0].objects
    first = matched[0]
    assert first.mask_source == "sa1b" and first.sa1b_index == 0 and first.sa1b_iou >= 0.5
    np.testing.assert_array_equal(first.mask, annotation)
    assert first.box_xyxy == mask_box(annotation)
    assert matcher.ground([image], image_tags[:1], sa1b_masks=[None])[0].objects[0].mask_source == "sam"


def test_masks_round_trip_through_coco_rle(grounded):
    obj = next(o for r in grounded for o in r.objects)
    rle = obj.to_rle()
    assert rle["size"] == list(obj.mask.shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), obj.mask)
