"""``vae_batching``: ``padded`` reproduces the official trainer's padded batch encode; ``per_image`` differs."""

from __future__ import annotations

import pytest
import torch

from groundedit.models.bagel import SequencePacker


def _images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 64, 64, generator=g) * 2 - 1, torch.rand(3, 48, 32, generator=g) * 2 - 1


def _pack(tiny, batching: str):
    """Two samples whose VAE images differ in size (64x64 and 48x32)."""
    enc = lambda s: tiny.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    a, b = _images()
    p = SequencePacker(tiny.config, tiny.tokens, vae_batching=batching)
    p.add_vae_image(a)
    p.add_text(enc("make the car blue"))
    p.add_vae_image(b, noised=True, timestep=0.4)
    p.end_sample()
    p.add_vae_image(b)
    p.add_text(enc("remove the dog"), loss=True)
    p.add_vae_image(a, noised=True, timestep=0.7)
    p.end_sample()
    return p.build()


def official_padded_latents(
    vae, images: list[torch.Tensor], generator: torch.Generator
) -> list[torch.Tensor]:
    """The official trainer's encode, written out: ``PackedDataset.to_tensor`` zero-pads every VAE image of
    the pack bottom-right to the largest height and width; the loop encodes that batch in one call; the model
    later keeps each latent's top-left ``h*p x w*p`` corner."""
    sizes = [im.shape for im in images]
    largest = [max(s[d] for s in sizes) for d in range(3)]
    padded = torch.zeros(len(images), *largest)
    for i, im in enumerate(images):
        padded[i, :, : im.shape[1], : im.shape[2]] = im
    return list(vae.encode(padded, generator=generator))


@torch.no_grad()
def test_padded_reproduces_the_official_padded_encode(tiny):
    model, vae = tiny.model, tiny.vae
    batch = _pack(tiny, "padded")
    assert batch.vae_batching == "padded"
    n_tokens = sum(h * w for h, w in batch.latent_grids)
    noise = torch.randn(n_tokens, tiny.config.latent_token_dim, generator=torch.Generator().manual_seed(9))
    reference_latents = official_padded_latents(vae, batch.vae_images, torch.Generator().manual_seed(1))
    reference = model(batch, latents=reference_latents, noise=noise, hidden_layers={2})
    padded = model(batch, vae=vae, noise=noise, hidden_layers={2}, generator=torch.Generator().manual_seed(1))
    assert abs(float(padded.ce - reference.ce)) < 1e-5 and abs(float(padded.mse - reference.mse)) < 1e-5
    torch.testing.assert_close(padded.final_hidden, reference.final_hidden, atol=1e-5, rtol=0)

    per_image = model(
        _pack(tiny, "per_image"),
        vae=vae,
        noise=noise,
        hidden_layers={2},
        generator=torch.Generator().manual_seed(1),
    )
    alone = model.encode_images(vae, batch.vae_images, torch.Generator().manual_seed(1), "per_image")
    together = model.encode_images(vae, batch.vae_images, torch.Generator().manual_seed(1), "padded")
    small = alone[1]
    assert together[1].shape[1:] == (8, 8) and small.shape[1:] == (6, 4)  # the padded latent keeps the pad
    assert (together[1][:, :6, :4] - small).abs().max() > 1e-3  # padding leaks into the small image's latent
    assert abs(float(per_image.mse - padded.mse)) > 1e-6


def test_unknown_batching_is_refused(tiny):
    with pytest.raises(ValueError, match="vae_batching"):
        SequencePacker(tiny.config, tiny.tokens, vae_batching="bucketed")
    with pytest.raises(ValueError, match="unknown VAE batching"):
        tiny.model.encode_images(tiny.vae, list(_images()), batching="bucketed")
