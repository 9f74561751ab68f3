"""The grounding losses on hand-made inputs with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from groundedit.train.losses import (
    binary_target,
    grid_of,
    mask_bce,
    mask_coverage,
    negative_cosine,
    resize_tokens,
    text_vision_alignment,
    vision_vision_alignment,
    weighted_mean,
)


def identity(x):
    return x


def test_negative_cosine_known_values():
    v = torch.tensor([1.0, 2.0, -3.0])
    assert negative_cosine(v, 2.5 * v).item() == pytest.approx(-1.0, abs=1e-6)
    assert negative_cosine(v, -v).item() == pytest.approx(1.0, abs=1e-6)
    assert negative_cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])).item() == pytest.approx(0.0)
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert negative_cosine(rows, torch.tensor([[2.0, 0.0], [0.0, -1.0]])).item() == pytest.approx(0.0)


def test_weighted_mean_is_the_masked_mean_of_the_right_rows():
    rows = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(weighted_mean(rows, torch.tensor([0.0, 1.0, 0.0, 1.0])), (rows[1] + rows[3]) / 2)
    half = weighted_mean(rows, torch.tensor([1.0, 0.0, 0.0, 0.5]))
    torch.testing.assert_close(half, (rows[0] + 0.5 * rows[3]) / 1.5)


def test_mask_coverage_counts_each_cell():
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, :16] = True  # left half
    assert mask_coverage(mask, (2, 2)).tolist() == [1.0, 0.0, 1.0, 0.0]
    mask[:8, :] = True  # plus the top quarter
    assert mask_coverage(mask, (2, 2)).tolist() == [1.0, 0.5, 1.0, 0.0]
    wide = torch.zeros(30, 60, dtype=torch.bool)
    wide[:, 40:] = True  # the right third, on a 1x3 grid
    assert mask_coverage(wide, (1, 3)).tolist() == [0.0, 0.0, 1.0]


def test_mask_bce_perfect_and_uninformed_logits():
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mask_bce((target * 2 - 1) * 30, target).item() < 1e-10
    assert mask_bce(torch.zeros(2, 2), target).item() == pytest.approx(math.log(2), abs=1e-6)
    assert mask_bce((1 - target * 2) * 30, target).item() == pytest.approx(30.0, abs=1e-4)


def test_resize_tokens_is_bilinear_on_the_grid():
    tokens = torch.tensor([[0.0], [1.0]])  # a 1x2 grid
    assert resize_tokens(tokens, (1, 2), (1, 4)).flatten().tolist() == [0.0, 0.25, 0.75, 1.0]
    grid = torch.arange(6.0)[:, None].repeat(1, 3)  # 2x3 grid, 3 channels
    assert torch.equal(resize_tokens(grid, (2, 3), (2, 3)), grid)


def test_text_vision_alignment_projects_the_coverage_weighted_mean():
    """Ltv = −cos(Pt(Σ c_i v_i / Σ c_i), mean location state), worked by hand. Pt is a non-linear map that
    also moves the direction (axes rotated, then ReLU), so each mistake gives another number: projecting
    each token before averaging, ignoring partial coverage, reading uncovered tokens, projecting the text
    instead, or leaving Pt out."""

    def pt(x):
        return torch.relu(x[..., [1, 2, 0]] - 1.0)  # (a, b, c) -> relu((b, c, a) - 1)

    edited = torch.tensor([[4.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 9.0], [5.0, 5.0, 5.0]])
    coverage = torch.tensor([1.0, 0.5, 0.0, 0.0])  # token 0 fully inside, token 1 half, 2 and 3 outside
    location = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])  # mean (1, 2, 0)
    # weighted mean (4, 3, 0) / 1.5 = (8/3, 2, 0); Pt -> relu((2, 0, 8/3) - 1) = (1, 0, 5/3);
    # cos with (1, 2, 0) = 1 / (sqrt(34) / 3 * sqrt(5)) = 3 / sqrt(170)
    got = text_vision_alignment(pt, edited, coverage, location).item()
    assert got == pytest.approx(-3 / math.sqrt(170), abs=1e-6)
    wrong = {
        "tokens projected, then averaged": negative_cosine(
            weighted_mean(pt(edited), coverage), location.mean(0)
        ),
        "partial coverage taken as full": negative_cosine(pt(edited[:2].mean(0)), location.mean(0)),
        "uncovered tokens": negative_cosine(pt(weighted_mean(edited, 1 - coverage)), location.mean(0)),
        "text projected": negative_cosine(weighted_mean(edited, coverage), pt(location.mean(0))),
        "no projection": negative_cosine(weighted_mean(edited, coverage), location.mean(0)),
    }
    for mistake, value in wrong.items():
        assert abs(value.item() - got) > 0.05, mistake


def test_vision_vision_alignment_resizes_to_the_vit_grid():
    # A 2x2 edited grid whose channels are (1, x) alignment targets on a 4x4 ViT grid: after bilinear
    # resizing, each patch's vector is proportional to the target built by the same interpolation.
    edited = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    vit = resize_tokens(edited, (2, 2), (4, 4)) * 3.0
    assert vision_vision_alignment(identity, edited, (2, 2), vit, (4, 4)).item() == pytest.approx(
        -1.0, abs=1e-6
    )
    assert vision_vision_alignment(lambda x: -x, edited, (2, 2), vit, (4, 4)).item() == pytest.approx(
        1.0, abs=1e-6
    )


def test_binary_target_and_grid_checks():
    m = torch.zeros(8, 8)
    m[:, :5] = 1.0
    assert binary_target(m, (2, 2)).tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert grid_of(12, (48, 64), 16) == (3, 4)
    with pytest.raises(ValueError, match="do not fit"):
        grid_of(10, (48, 64), 16)
