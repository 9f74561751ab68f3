"""Flow-matching sampling of edited images with three-way classifier-free guidance.

Each edit denoises one latent image against three cached contexts: the full one (image and instruction),
one without the instruction and one without the image. All branches of all edits run in one forward per
step: the contexts' keys are copied once into a shared buffer and only the noised tokens (with their two
image markers) are computed each step. The guided velocity combines the branches as the official sampler
does (``text_channel`` renorm by default) and Euler steps follow the shifted timestep schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .attention import KVBuffer, Segment, SegmentAttention
from .blocks import grid_position_ids
from .context import Context
from .model import Bagel, shift_timesteps
from .packing import SpecialTokens
from .qwen2_mot import Route


@dataclass(frozen=True)
class Guidance:
    """CFG settings; the text branch drops the instruction, the image branch drops the input image."""

    text_scale: float = 4.0
    img_scale: float = 2.0
    interval: tuple[float, float] = (0.0, 1.0)
    renorm_type: str = "text_channel"  # "text_channel" | "channel" | "global"
    renorm_min: float = 0.0


def schedule(steps: int, shift: float) -> tuple[list[float], list[float]]:
    """Times t (from 1 towards 0, shifted) of the ``steps - 1`` Euler steps and their step sizes."""
    ts = shift_timesteps(torch.linspace(1, 0, steps), shift)
    return ts[:-1].tolist(), (ts[:-1] - ts[1:]).tolist()


def guide(v: Tensor, v_text: Tensor | None, v_img: Tensor | None, g: Guidance) -> Tensor:
    """Combine the velocities of one edit's branches (no guidance without the text branch, as officially)."""
    if v_text is None:
        return v
    cond = v_text + g.text_scale * (v - v_text)
    if g.renorm_type == "text_channel":
        scale = v.norm(dim=-1, keepdim=True) / (cond.norm(dim=-1, keepdim=True) + 1e-8)
        cond = cond * scale.clamp(min=g.renorm_min, max=1.0)
        return v_img + g.img_scale * (cond - v_img) if v_img is not None else cond
    out = v_img + g.img_scale * (cond - v_img) if v_img is not None else cond
    if g.renorm_type == "channel":
        scale = v.norm(dim=-1, keepdim=True) / (out.norm(dim=-1, keepdim=True) + 1e-8)
    elif g.renorm_type == "global":
        scale = v.norm() / (out.norm() + 1e-8)
    else:
        raise ValueError(f"unknown cfg renorm type {g.renorm_type!r}")
    return out * scale.clamp(min=g.renorm_min, max=1.0)


class _Plan:
    """Packed layout of one step's forward for a given set of active branches."""

    def __init__(
        self,
        model: Bagel,
        branches: list[list[Context]],
        q_lens: list[int],
        active: list[int],
        buffer: KVBuffer,
        offsets: list[dict[int, int]],
    ) -> None:
        dev = model.device
        gather, positions, gen, rows, segments, self.owners = [], [], [], [], [], []
        q0, e0 = 0, 0
        for i, (ctxs, q) in enumerate(zip(branches, q_lens, strict=True)):
            for b in active:
                ctx, k0 = ctxs[b], offsets[i][b]
                gather.append(torch.arange(e0, e0 + q))
                positions.append(torch.full((q,), ctx.rope))
                gen.append(torch.cat([torch.zeros(1), torch.ones(q - 2), torch.zeros(1)]).bool())
                rows.append(torch.arange(k0 + ctx.length, k0 + ctx.length + q))
                segments.append(Segment(slice(q0, q0 + q), slice(k0, k0 + ctx.length + q)))
                self.owners.append((i, b, q - 2))
                q0 += q
            e0 += q
        self.gather = torch.cat(gather).to(dev)
        gen_mask = torch.cat(gen).to(dev)
        self.latent_rows = gen_mask.nonzero().squeeze(1)
        self.route = Route(gen_mask)
        self.rope = model.language_model.model.rope(torch.cat(positions).to(dev))
        self.attention = SegmentAttention(segments, buffer, torch.cat(rows).to(dev))


class _Step:
    """Euler steps of one plan, in place on the sampler state ``x`` [all latent tokens, latent_dim]."""

    def __init__(self, model: Bagel, plan: _Plan, x: Tensor, query_parts, guidance: Guidance) -> None:
        self.model, self.plan, self.x, self.guidance = model, plan, x, guidance
        self.pos_embeds, self.marker_embeds, self.latent_rows, self.marker_rows, self.n_queries = query_parts
        self.n_edits = 1 + max(i for i, _, _ in plan.owners)

    def __call__(self, t: float, dt: float) -> None:
        m, plan = self.model, self.plan
        lat = m.embed_latents(self.x, self.pos_embeds, t)
        queries = lat.new_empty((self.n_queries, lat.shape[1]))
        queries.index_copy_(0, self.latent_rows, lat).index_copy_(0, self.marker_rows, self.marker_embeds)
        final, _ = m.run_llm(queries.index_select(0, plan.gather), plan.rope, plan.route, plan.attention)
        v_all = m.llm2vae(final.index_select(0, plan.latent_rows)).float()
        per_edit: list[dict[int, Tensor]] = [{} for _ in range(self.n_edits)]
        for (i, b, _), v in zip(plan.owners, v_all.split([o[2] for o in plan.owners]), strict=True):
            per_edit[i][b] = v
        v = torch.cat([guide(d[0], d.get(1), d.get(2), self.guidance) for d in per_edit])
        self.x.sub_(v * dt)


def denoise(
    model: Bagel,
    branches: list[list[Context]],
    grids: list[tuple[int, int]],
    noise: list[Tensor],
    tokens: SpecialTokens,
    steps: int = 50,
    timestep_shift: float = 3.0,
    guidance: Guidance = Guidance(),
    on_step: Callable[[int], None] | None = None,
) -> list[Tensor]:
    """Sample latent tokens for each edit.

    ``branches[i]`` = [full, without text, without image] contexts of edit i; ``grids[i]`` its latent token
    grid (h, w); ``noise[i]`` the starting noise [h*w, latent_dim]. Returns the final latent tokens.
    ``on_step(n)`` is called after each denoising step with the steps taken so far.
    """
    cfg, dev = model.config, model.device
    use = [0] + ([1] if guidance.text_scale > 1.0 else []) + ([2] if guidance.img_scale > 1.0 else [])
    q_lens = [h * w + 2 for h, w in grids]
    offsets: list[dict[int, int]] = []
    total = 0
    for ctxs, q in zip(branches, q_lens, strict=True):
        offsets.append({})
        for b in use:
            offsets[-1][b] = total
            total += ctxs[b].length + q
    llm = cfg.llm
    buffer = KVBuffer(
        llm.num_hidden_layers, total, llm.num_key_value_heads, llm.head_dim, model.vae2llm.weight
    )
    for ctxs, offs in zip(branches, offsets, strict=True):
        for b, k0 in offs.items():
            buffer.write(k0, ctxs[b].kv)
    markers = model.embed_text(torch.tensor([tokens.start_of_image, tokens.end_of_image], device=dev))
    pos = torch.cat([grid_position_ids(h, w, cfg.max_latent_size, dev) for h, w in grids])
    is_latent = torch.cat(
        [torch.cat([torch.zeros(1), torch.ones(q - 2), torch.zeros(1)]) for q in q_lens]
    ).bool()
    query_parts = (
        model.latent_pos_embed(pos),
        markers.repeat(len(grids), 1),
        is_latent.nonzero().squeeze(1).to(dev),
        (~is_latent).nonzero().squeeze(1).to(dev),
        is_latent.numel(),
    )
    x = torch.cat(noise).to(dev, torch.float32)
    stepper: dict[bool, _Step] = {}
    times, dts = schedule(steps, timestep_shift)
    for n, (t, dt) in enumerate(zip(times, dts, strict=True), 1):
        cfg_on = guidance.interval[0] < t <= guidance.interval[1] and len(use) > 1
        if cfg_on not in stepper:
            plan = _Plan(model, branches, q_lens, use if cfg_on else [0], buffer, offsets)
            stepper[cfg_on] = _Step(model, plan, x, query_parts, guidance)
        stepper[cfg_on](t, dt)
        if on_step is not None:
            on_step(n)
    return list(x.split([h * w for h, w in grids]))
