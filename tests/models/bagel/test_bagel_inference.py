"""Editing on the tiny model: output sizes, seeding, batches of mixed sizes, think mode, guidance maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from groundedit.models.bagel import BagelEditor, Guidance
from groundedit.models.bagel.denoise import guide, schedule


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_edit_returns_the_input_size_and_is_seeded(tiny_dir):
    editor = BagelEditor.from_pretrained(tiny_dir, device="cpu")  # the documented entry point
    src = picture(64, 64)
    [a] = editor.edit([src], ["make the car blue"], seed=3, steps=4)
    [b] = editor.edit([src], ["make the car blue"], seed=3, steps=4)
    [c] = editor.edit([src], ["make the car blue"], seed=4, steps=4)
    assert a.size == src.size and a.mode == "RGB"
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_batch_of_mixed_sizes_matches_single_edits(editor):
    images = [picture(64, 64, 0), picture(80, 48, 1), picture(37, 53, 2).convert("RGBA")]
    prompts = ["make the car blue", "remove the dog", "add a small bird"]
    batch = editor.edit(images, prompts, seed=0, steps=4)
    assert [im.size for im in batch] == [im.size for im in images]
    for i, (im, prompt) in enumerate(zip(images, prompts, strict=True)):
        [alone] = editor.edit([im], [prompt], seed=i, steps=4)
        assert np.abs(pixels(alone) - pixels(batch[i])).max() <= 1  # float summation order only
    chunked = editor.edit(images, prompts, seed=0, steps=4, batch_size=2)
    assert all(np.abs(pixels(x) - pixels(y)).max() <= 1 for x, y in zip(chunked, batch, strict=True))


def test_think_mode_writes_a_plan_first(editor):
    [res] = editor.edit_detailed(
        [picture(64, 64)], ["make the car blue"], steps=3, think=True, max_think_tokens=5
    )
    assert isinstance(res.thinking, str) and res.image.size == (64, 64)
    [plain] = editor.edit_detailed([picture(64, 64)], ["make the car blue"], steps=3)
    assert plain.thinking is None


def test_arguments_are_checked(editor):
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        editor.edit([picture(64, 64)] * 2, ["x"])
    with pytest.raises(ValueError, match="renorm"):
        editor.edit([picture(64, 64)], ["x"], steps=2, cfg_renorm_type="bogus")


def test_schedule_is_shifted_towards_noise():
    times, dts = schedule(50, 3.0)
    assert len(times) == 49 and times[0] == 1.0
    assert sum(dts) == pytest.approx(1.0)
    t = 0.5
    assert schedule(3, 3.0)[0][1] == pytest.approx(3 * t / (1 + 2 * t))


def test_guidance_text_channel_renorm():
    g = torch.Generator().manual_seed(0)
    v, v_text, v_img = (torch.randn(5, 64, generator=g) for _ in range(3))
    cfg = Guidance(4.0, 2.0)
    cond = v_text + 4.0 * (v - v_text)
    cond = cond * (v.norm(dim=-1, keepdim=True) / (cond.norm(dim=-1, keepdim=True) + 1e-8)).clamp(max=1.0)
    torch.testing.assert_close(guide(v, v_text, v_img, cfg), v_img + 2.0 * (cond - v_img))
    assert torch.equal(guide(v, None, v_img, cfg), v)  # no text branch: no guidance at all
    out = guide(v, v_text, v_img, Guidance(4.0, 2.0, renorm_type="global"))
    assert out.norm() <= v.norm() * (1 + 1e-6)
