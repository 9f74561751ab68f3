"""FLUX VAE: shapes, the latent scaling, and seeded posterior sampling."""

from __future__ import annotations

import torch

from groundedit.models.bagel import FluxVAE, VAEConfig
from groundedit.models.bagel.blocks import patchify, unpatchify
from groundedit.models.bagel.loading import tensor_shapes


@torch.no_grad()
def test_encode_decode_shapes_and_scaling(tiny):
    vae = tiny.vae
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = vae.encode(x, sample=False)
    assert z.shape == (2, 16, 8, 6)  # 16 channels, x8 down
    mean = vae.encoder(x).chunk(2, dim=1)[0]
    torch.testing.assert_close(z, 0.3611 * (mean - 0.1159))
    assert vae.decode(z).shape == x.shape
    # decode undoes the scaling before the decoder
    torch.testing.assert_close(vae.decode(z), vae.decoder(mean))


@torch.no_grad()
def test_posterior_sampling_is_seeded(tiny):
    x = torch.zeros(1, 3, 32, 32)
    a = tiny.vae.encode(x, generator=torch.Generator().manual_seed(1))
    b = tiny.vae.encode(x, generator=torch.Generator().manual_seed(1))
    c = tiny.vae.encode(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_latent_patches_round_trip():
    z = torch.randn(16, 8, 6)
    tokens = patchify(z, 2)
    assert tokens.shape == (4 * 3, 64)
    assert torch.equal(tokens[1], z[:, 0:2, 2:4].permute(1, 2, 0).reshape(-1))  # (row, col, channel)
    assert torch.equal(unpatchify(tokens, 4, 3, 2), z)


def test_layout_is_read_from_the_checkpoint(tiny_dir):
    cfg = VAEConfig.from_shapes(tensor_shapes(tiny_dir / "ae.safetensors"))
    layout = (cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels, cfg.downsample)
    assert layout == (32, (1, 1, 1, 1), 1, 16, 8)
    with torch.device("meta"):
        flux = FluxVAE(VAEConfig())
    shapes = {k: tuple(v.shape) for k, v in flux.state_dict().items()}
    assert VAEConfig.from_shapes(shapes) == VAEConfig()
