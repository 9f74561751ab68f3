"""Our RAM++ against a from-scratch reference that reads official-layout weights directly.

The reference follows the official computation step by step (fused qkv window attention with the
stored relative-position index and shift mask, patch merging order, mean-pooled token, per-image
description reweighting loop, BERT cross-attention layers), so agreement checks the key map, the
q|k|v split and the head together.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from groundedit.models.perception.ram_plus_adapter import ours_to_official
from groundedit.models.perception.tiny import build_ram_plus


def _ln(x, sd, prefix, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _lin(x, sd, prefix):
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def _windows(x, ws):
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _unwindows(x, ws, b, h, w):
    c = x.shape[-1]
    return x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def reference_swin(sd, cfg, pixels):
    x = F.conv2d(
        pixels,
        sd["visual_encoder.patch_embed.proj.weight"],
        sd["visual_encoder.patch_embed.proj.bias"],
        stride=cfg.patch_size,
    )
    b, c, res, _ = x.shape
    x = _ln(x.flatten(2).transpose(1, 2), sd, "visual_encoder.patch_embed.norm")
    for i, depth in enumerate(cfg.depths):
        heads, ws = cfg.num_heads[i], min(cfg.window_size, res)
        for j in range(depth):
            p = f"visual_encoder.layers.{i}.blocks.{j}."
            shift = ws // 2 if (j % 2 and res > cfg.window_size) else 0
            h = _ln(x, sd, p + "norm1").view(b, res, res, c)
            h = torch.roll(h, (-shift, -shift), (1, 2)) if shift else h
            win = _windows(h, ws)
            n = ws * ws
            q, k, v = (
                _lin(win, sd, p + "attn.qkv").reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            )
            attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
            table = sd[p + "attn.relative_position_bias_table"]
            bias = table[sd[p + "attn.relative_position_index"].view(-1)].view(n, n, -1).permute(2, 0, 1)
            attn = attn + bias[None]
            if shift:
                mask = sd[p + "attn_mask"]
                attn = (attn.view(b, mask.shape[0], heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
            out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
            out = _unwindows(_lin(out, sd, p + "attn.proj"), ws, b, res, res)
            out = torch.roll(out, (shift, shift), (1, 2)) if shift else out
            x = x + out.reshape(b, res * res, c)
            x = x + _lin(F.gelu(_lin(_ln(x, sd, p + "norm2"), sd, p + "mlp.fc1")), sd, p + "mlp.fc2")
        if i < len(cfg.depths) - 1:
            g = x.view(b, res, res, c)
            g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
            p = f"visual_encoder.layers.{i}.downsample."
            x = _lin(_ln(g.view(b, -1, 4 * c), sd, p + "norm"), sd, p + "reduction")
            res, c = res // 2, c * 2
    x = _ln(x, sd, "visual_encoder.norm")
    return torch.cat([x.mean(1, keepdim=True), x], 1)


def reference_logits(sd, cfg, pixels):
    embeds = _lin(reference_swin(sd, cfg, pixels), sd, "image_proj")
    cls = embeds[:, 0] / embeds[:, 0].norm(dim=-1, keepdim=True)
    label_embed, d = sd["label_embed"], cfg.descriptions_per_tag
    logits = (sd["reweight_scale"].exp() * cls @ label_embed.t()).view(len(cls), -1, d)
    weights = logits.softmax(dim=2)
    reweighted = torch.stack(
        [(weights[i].unsqueeze(-1) * label_embed.view(-1, d, cfg.text_width)).sum(1) for i in range(len(cls))]
    )
    h = F.relu(_lin(reweighted, sd, "wordvec_proj"))
    heads = cfg.head_heads
    for layer in range(cfg.head_layers):
        p = f"tagging_head.encoder.layer.{layer}."

        def split(t):
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        q = split(_lin(h, sd, p + "crossattention.self.query"))
        k = split(_lin(embeds, sd, p + "crossattention.self.key"))
        v = split(_lin(embeds, sd, p + "crossattention.self.value"))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
        ctx = (scores @ v).transpose(1, 2).reshape(h.shape)
        h = _ln(
            _lin(ctx, sd, p + "crossattention.output.dense") + h,
            sd,
            p + "crossattention.output.LayerNorm",
            1e-12,
        )
        ffn = _lin(F.gelu(_lin(h, sd, p + "intermediate.dense")), sd, p + "output.dense")
        h = _ln(ffn + h, sd, p + "output.LayerNorm", 1e-12)
    return _lin(h, sd, "fc").squeeze(-1)


def test_our_model_matches_the_official_computation():
    model = build_ram_plus("tiny", num_tags=5, seed=3).eval()
    official = ours_to_official(model)
    pixels = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(pixels)
        reference = reference_logits(official, model.config, pixels)
    assert ours.shape == (2, 5)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
