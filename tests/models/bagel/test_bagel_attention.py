"""Split-wise attention (no [L, L] mask) equals the dense-mask attention it replaced, in fp32 to 1e-5."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from groundedit.models.bagel import model as bagel_model
from groundedit.models.bagel.attention import Segment, attend, split_segments
from groundedit.models.bagel.packing import sample_mask

# An InterCoG sample's splits (system, source VAE + ViT, instruction, grounding text, grounded noised,
# grounded VAE + ViT, description, edited noised), with dropped images shortening it in the second.
INTERCOG = (
    [7, 14, 10, 5, 9, 14, 14, 10, 8, 14],
    ["causal", "full", "full", "causal", "causal", "noise", "full", "full", "causal", "noise"],
)
DROPPED = ([7, 10, 9, 14, 14, 8, 14], ["causal", "full", "causal", "noise", "full", "causal", "noise"])
PLAIN = ([6, 12, 4, 12], ["causal", "full", "causal", "noise"])


def _pack(samples):
    """Split segments and the dense reference segments (one per sample, its full mask) of a pack."""
    split, dense, start = [], [], 0
    for lens, modes in samples:
        end = start + sum(lens)
        split += split_segments(start, lens, modes)
        dense.append(Segment(slice(start, end), slice(start, end), sample_mask(lens, modes)))
        start = end
    return split, dense, start


@pytest.mark.parametrize(
    "samples",
    [[INTERCOG], [INTERCOG, PLAIN], [DROPPED, INTERCOG, PLAIN]],
    ids=["one", "two", "three"],
)
def test_split_attention_matches_the_dense_mask(samples):
    split, dense, length = _pack(samples)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(length, 4, 16, generator=g, requires_grad=True)  # 4 query heads over 2 KV heads
    k = torch.randn(length, 2, 16, generator=g, requires_grad=True)
    v = torch.randn(length, 2, 16, generator=g, requires_grad=True)
    a, b = attend(q, k, v, split), attend(q, k, v, dense)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    w = torch.randn(a.shape, generator=g)
    ga = torch.autograd.grad((a * w).sum(), (q, k, v))
    gb = torch.autograd.grad((b * w).sum(), (q, k, v))
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_keys_with_holes_skip_noised_splits():
    segments = split_segments(3, *PLAIN)
    assert [s.q for s in segments] == [slice(3, 9), slice(9, 21), slice(21, 25), slice(25, 37)]
    assert [s.causal for s in segments] == [True, False, True, False]
    assert segments[2].k == slice(3, 25)  # nothing noised before it: a plain slice
    after = split_segments(0, [2, 3, 2], ["causal", "noise", "causal"])[2]
    assert after.k.tolist() == [0, 1, 5, 6]  # the noised split's rows are left out


class _Largest(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_no_tensor_grows_with_the_square_of_the_sample():
    """At 2.1K tokens a dense mask alone is 4.4M elements; no tensor of the split path comes near it."""
    lens = [n * 15 for n in INTERCOG[0]]
    split, _, length = _pack([(lens, INTERCOG[1])])
    q = torch.randn(length, 4, 16, requires_grad=True)
    k, v = torch.randn(length, 2, 16, requires_grad=True), torch.randn(length, 2, 16, requires_grad=True)
    seen = _Largest()
    with seen:
        attend(q, k, v, split).sum().backward()
    assert seen.numel < length * length / 8, (seen.numel, length * length)


def test_bagel_forward_matches_the_dense_mask_path(tiny, monkeypatch):
    """The whole training forward of a 3-sample pack, split-wise and with each sample's dense mask."""
    from groundedit.models.bagel import SequencePacker

    g = torch.Generator().manual_seed(0)
    enc = lambda s: tiny.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    p = SequencePacker(tiny.config, tiny.tokens)
    for n in range(3):
        p.add_text(enc("You edit images."))
        p.add_vae_image(torch.rand(3, 32, 48, generator=g) * 2 - 1)
        p.add_vit_image(torch.rand(3, 28, 42, generator=g) * 2 - 1)
        p.add_text(enc("make it blue" * (n + 1)), loss=True)
        p.add_vae_image(torch.rand(3, 32, 32, generator=g) * 2 - 1, noised=True)
        p.add_vae_image(torch.rand(3, 32, 32, generator=g) * 2 - 1)
        p.add_text(enc("now it is blue"), loss=True)
        p.add_vae_image(torch.rand(3, 48, 32, generator=g) * 2 - 1, noised=True)
        p.end_sample()
    batch = p.build()

    @torch.no_grad()
    def run():
        return tiny.model(batch, vae=tiny.vae, hidden_layers={2}, generator=torch.Generator().manual_seed(1))

    split = run()

    def dense(start, lens, modes, device=None):
        end = start + sum(lens)
        return [Segment(slice(start, end), slice(start, end), sample_mask(lens, modes).to(device))]

    monkeypatch.setattr(bagel_model, "split_segments", dense)
    reference = run()
    torch.testing.assert_close(split.final_hidden, reference.final_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(split.hidden_states[2], reference.hidden_states[2], atol=1e-5, rtol=0)
    assert abs(float(split.ce - reference.ce)) < 1e-5 and abs(float(split.mse - reference.mse)) < 1e-5
