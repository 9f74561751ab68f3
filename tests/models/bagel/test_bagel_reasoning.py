"""InterCoG reasoning edits on the tiny model: four artifacts, seeded, independent of the batch."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.bagel import ReasoningEditor

from .test_bagel_inference import picture, pixels


def test_reasoning_edit_returns_four_artifacts(editor):
    reasoner = ReasoningEditor(editor, "Ground the target, then edit.")
    images = [picture(64, 48, 0), picture(40, 56, 1)]
    prompts = ["make the car on the left blue", "remove the second dog"]
    results = reasoner.edit(images, prompts, seed=5, steps=3, max_text_tokens=4)
    for r, im in zip(results, images, strict=True):
        assert isinstance(r.grounding, str) and isinstance(r.description, str)
        assert r.grounded.size == r.edited.size == im.size
    [alone] = reasoner.edit(images[1:], prompts[1:], seed=6, steps=3, max_text_tokens=4)
    assert alone.grounding == results[1].grounding and alone.description == results[1].description
    assert np.abs(pixels(alone.edited) - pixels(results[1].edited)).max() <= 1  # float summation order only
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        reasoner.edit(images, prompts[:1])
