"""Expert routing: every strategy (single expert, gather/scatter, overwrite) gives the per-token result."""

from __future__ import annotations

import pytest
import torch

from groundedit.models.bagel.qwen2_mot import Route


@pytest.mark.parametrize("n_gen", [0, 1, 9, 32, 60, 64])  # und-only, few gen, mixed, mostly gen, gen-only
def test_route_matches_per_token_experts(n_gen):
    g = torch.Generator().manual_seed(n_gen)
    und, gen = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    x = torch.randn(64, 8, generator=g, requires_grad=True)
    mask = torch.zeros(64, dtype=torch.bool)
    mask[torch.randperm(64, generator=g)[:n_gen]] = True
    route = Route(mask)
    out = route.apply(x, und, gen)
    expected = torch.where(mask[:, None], gen(x), und(x))
    torch.testing.assert_close(out, expected)
    pair = route.apply(x, lambda h: (und(h), 2 * und(h)), lambda h: (gen(h), 2 * gen(h)))
    torch.testing.assert_close(pair[1], 2 * expected)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (grad_ref,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad, grad_ref)
    with torch.no_grad():
        torch.testing.assert_close(route.apply(x, und, gen), expected)
