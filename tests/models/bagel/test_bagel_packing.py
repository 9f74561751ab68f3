"""Packer: masks and position ids on a hand-checked sequence (text + conditioning image + noised image + text)."""

from __future__ import annotations

import pytest
import torch

from groundedit.models.bagel import SequencePacker, SpecialTokens, tiny_config
from groundedit.models.bagel.config import ResizeRule
from groundedit.models.bagel.packing import sample_mask

TOK = SpecialTokens(bos=1, eos=2, start_of_image=9, end_of_image=10)


def img(h: int, w: int) -> torch.Tensor:
    return torch.zeros(3, h, w)


@pytest.fixture
def packed():
    p = SequencePacker(tiny_config(100), TOK)
    spans = [
        p.add_text([5, 6]),  # 0..3       positions 0..3
        p.add_vae_image(img(32, 32)),  # 4..9  2x2 latents, position 4
        p.add_vit_image(img(28, 28)),  # 10..15 2x2 patches, position 5
        p.add_vae_image(img(32, 16), noised=True, timestep=0.5),  # 16..19  2x1 latents, position 6
        p.add_text([7], loss=True),  # 20..22  positions 6..8 (no advance after a noised image)
    ]
    p.end_sample()
    spans.append(p.add_text([8], loss=True))  # second sample: 23..25, positions restart at 0
    p.end_sample()
    return p.build(), spans


def test_position_ids_follow_the_official_rules(packed):
    batch, _ = packed
    expected = [0, 1, 2, 3] + [4] * 6 + [5] * 6 + [6] * 4 + [6, 7, 8] + [0, 1, 2]
    assert batch.position_ids.tolist() == expected
    assert batch.samples == [(0, 23), (23, 26)]
    assert batch.split_lens == [[4, 6, 6, 4, 3], [3]]
    assert batch.attn_modes == [["causal", "full", "full", "noise", "causal"], ["causal"]]


def test_token_kinds_and_indexes(packed):
    batch, spans = packed
    assert batch.text_ids.tolist() == [1, 5, 6, 2, 9, 10, 9, 10, 9, 10, 1, 7, 2, 1, 8, 2]
    assert batch.text_index.tolist() == [0, 1, 2, 3, 4, 9, 10, 15, 16, 19, 20, 21, 22, 23, 24, 25]
    assert batch.vae_index.tolist() == [5, 6, 7, 8, 17, 18]
    assert batch.vit_index.tolist() == [11, 12, 13, 14]
    assert batch.latent_grids == [(2, 2), (2, 1)]
    assert batch.latent_position_ids.tolist() == [0, 1, 8, 9, 0, 8]  # row * max_latent_size(8) + col
    assert batch.vit_position_ids.tolist() == [0, 1, 16, 17]  # row * 16 + col (224 / 14 per side)
    assert batch.vit_patches.shape == (4, 3 * 14 * 14)
    assert batch.timesteps == [0.0, 0.5]
    # CE: every token from bos to the last id predicts the next one; eos is the last label.
    assert batch.ce_index.tolist() == [20, 21, 23, 24]
    assert batch.ce_labels.tolist() == [7, 2, 8, 2]
    assert [(s.kind, s.start, s.end, s.image) for s in spans] == [
        ("text", 0, 4, None),
        ("vae", 4, 10, 0),
        ("vit", 10, 16, 0),
        ("noised", 16, 20, 1),
        ("text", 20, 23, None),
        ("text", 23, 26, None),
    ]
    assert spans[3].tokens.tolist() == [17, 18]
    assert spans[0].tokens.tolist() == [1, 2]


def test_masks_causal_text_full_images_invisible_noise(packed):
    batch, _ = packed
    first, second = (
        sample_mask(lens, modes) for lens, modes in zip(batch.split_lens, batch.attn_modes, strict=True)
    )
    expected = torch.zeros(23, 23, dtype=torch.bool)
    expected[0:4, 0:4] = torch.ones(4, 4).tril().bool()  # text: causal
    expected[4:10, 0:10] = True  # clean VAE image: full inside, sees the text
    expected[10:16, 0:16] = True  # ViT image
    expected[16:20, 0:20] = True  # noised image sees everything before it and itself
    expected[20:23, 0:16] = True  # later text does not see the noised image ...
    expected[20:23, 20:23] = torch.ones(3, 3).tril().bool()  # ... and is causal
    assert torch.equal(first, expected)
    assert torch.equal(second, torch.ones(3, 3).tril().bool())


def test_skip_image_keeps_its_position_and_open_samples_are_rejected():
    p = SequencePacker(tiny_config(100), TOK)
    p.add_text([5])
    p.skip_image()
    p.add_text([6])
    with pytest.raises(ValueError, match="end_sample"):
        p.build()
    p.end_sample()
    assert p.build().position_ids.tolist() == [0, 1, 2, 4, 5, 6]
    with pytest.raises(ValueError, match="multiple of 16"):
        SequencePacker(tiny_config(100), TOK).add_vae_image(img(24, 32))


def test_resize_rules_match_the_official_transform():
    vae, vit = ResizeRule(1024, 512, 16), ResizeRule(980, 224, 14)
    assert vae.target_size(512, 512) == (512, 512)
    assert vae.target_size(2048, 1536) == (1024, 768)
    assert vae.target_size(300, 200) == (768, 512)  # short side raised to 512
    assert vae.target_size(1000, 700) == (992, 704)  # to the stride; 62.5 rounds to even, as officially
    assert vit.target_size(512, 512) == (518, 518)
    assert vit.target_size(1024, 1024) == (980, 980)
    for w, h in [(333, 1001), (4000, 3000), (17, 900)]:
        tw, th = vae.target_size(w, h)
        assert tw % 16 == 0 and th % 16 == 0 and max(tw, th) <= 1024
