"""LPIPS (our AlexNet / SqueezeNet backbones, official checkpoint key layout) and CLIP score, on
tiny random weights saved in the same formats as the real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groundedit.evaluation.perceptual import LPIPS, CLIPScorer


def save_lpips_files(net: str, folder):
    """Random weights written as torchvision's backbone file (``features.*`` plus a classifier)
    and the lpips package's linear file (``linK.model.1.weight``)."""
    torch.manual_seed(0)
    model = LPIPS(net)
    backbone = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)  # ignored, as in torchvision's files
    linear = {f"lin{i}.model.1.weight": lin.weight.abs() for i, lin in enumerate(model.lins)}
    torch.save(backbone, folder / f"{net}-backbone.pth")
    torch.save(linear, folder / f"{net}-linear.pth")
    return folder / f"{net}-backbone.pth", folder / f"{net}-linear.pth"


@pytest.mark.parametrize("net", ["squeeze", "alex"])
def test_lpips_is_zero_for_identical_images_and_positive_otherwise(net, tmp_path):
    model = LPIPS.from_files(net, *save_lpips_files(net, tmp_path))
    rng = np.random.default_rng(0)
    a = rng.random((72, 72, 3))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert model.distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert model.distance(a, b) > 0
    assert model.distance(a, b) == pytest.approx(model.distance(b, a), rel=1e-5)


def test_lpips_refuses_weights_of_another_shape(tmp_path):
    backbone, _ = save_lpips_files("alex", tmp_path)
    _, linear = save_lpips_files("squeeze", tmp_path)
    with pytest.raises(RuntimeError):
        LPIPS.from_files("alex", backbone, linear)  # seven squeeze lins for alex's five


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from groundedit.models.tiny_tokenizer import build_tiny_tokenizer

    d = tmp_path_factory.mktemp("tiny-clip")
    build_tiny_tokenizer(d)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    cfg = CLIPConfig(
        text_config={**small, "vocab_size": 1024, "max_position_embeddings": 77},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    return d


def test_clip_score_is_in_range_and_deterministic(tiny_clip):
    scorer = CLIPScorer(tiny_clip)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert scorer.pixels(rgb).shape == (1, 3, 32, 32)
    s = scorer.score(rgb, "a red car on the left")
    assert 0.0 <= s <= 100.0 and s == scorer.score(rgb, "a red car on the left")
