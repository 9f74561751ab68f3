"""The InterCoG objective of one pack: every loss term as a sum over its units, with the unit counts.

Units: CE and MSE are means over tokens (text tokens with a loss; noised latent tokens), the grounding
terms means over the reasoning samples that have what they read: Lvv over those whose grounded ViT tokens
were not dropped, Ltv and Lmask's text-conditioned part over those whose textual grounding was not dropped
(CFG's text-free branch). A sample's Lmask is the sum of the BCEs of the conditions it has. The trainer
divides each sum by the step's total count, so a step's loss does not depend on how its samples were
split into packs: ``L = Σ_t weight_t · Σ_packs sum_t / count_t``.

Choices where the paper leaves room (spec ``grounding``):

* Lmask reads the last layer's states (after the final norm, what the heads see), Ltv/Lvv the residual
  stream after ``align_layer`` layers.
* Ltv's "noised VAE tokens of the region" are the edited image's tokens weighted by the share of each
  token's cell the target mask covers (a plain masked mean where cells are fully in or out; never empty).
* Lvv's target (``vv_target``) is the LM's states at the grounded image's ViT tokens (``llm``, the same
  layer, the default) or SigLIP's output for that image (``siglip``).
* Lmask's BCE is on the decoder's output grid (``decoder``: 4× E's grid, 256² for SAM ViT-H) against the
  area-resampled target mask binarised at one half, or on logits upsampled to SAM's input frame
  (``input``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from groundedit.models.bagel import BagelConfig, BagelOutput

from .grounding import GroundingHeads, SamEncoder
from .losses import binary_target, mask_bce, mask_coverage, text_vision_alignment, vision_vision_alignment
from .sequence import EDITED_NOISED, GROUNDED_NOISED, GROUNDED_VIT, GROUNDING_TEXT, Pack, PackedSample
from .spec import GroundingSpec

TERMS = ("ce", "mse", "tv", "vv", "mask")
MASK_PARTS = ("mask_text", "mask_grounded", "mask_edited")


@dataclass
class Terms:
    """Per-term sums (tensors that carry gradients) and the number of units each sums over."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def pack_counts(pack: Pack) -> dict[str, int]:
    """Units of every term in a pack, known before its forward."""
    reasoning = [s for s in pack.samples if s.plan.reasoning]
    grounded_text = sum(GROUNDING_TEXT in s.spans for s in reasoning)
    noised = sum(len(s.tokens) for s in pack.batch.spans if s.kind == "noised")
    counts = {
        "ce": int(pack.batch.ce_index.numel()),
        "mse": noised,
        "tv": grounded_text,
        "mask": len(reasoning),
        "vv": sum(GROUNDED_VIT in s.spans for s in reasoning),
    }
    counts.update(dict.fromkeys(MASK_PARTS, len(reasoning)))
    counts["mask_text"] = grounded_text
    return counts


def _vit_grid(sample: PackedSample, patch: int) -> tuple[int, int]:
    image = next(op.image for op in sample.plan.ops if op.role == GROUNDED_VIT)
    return image.shape[1] // patch, image.shape[2] // patch


def pack_terms(
    out: BagelOutput,
    pack: Pack,
    heads: GroundingHeads,
    sam: SamEncoder,
    spec: GroundingSpec,
    config: BagelConfig,
) -> Terms:
    """Sums of every term over one pack's units (terms without units are absent)."""
    terms = Terms(counts=pack_counts(pack))
    if out.ce_per_token is not None:
        terms.sums["ce"] = out.ce_per_token.sum()
    if out.mse_per_token is not None:
        terms.sums["mse"] = out.mse_per_token.sum()
    reasoning = [s for s in pack.samples if s.plan.reasoning]
    if not reasoning:
        return terms
    batch, final, layer = pack.batch, out.final_hidden, out.hidden_states[spec.align_layer]

    def target(x: Tensor) -> Tensor:
        return x.detach() if spec.detach_targets else x

    # Mask reconstruction: three conditions, one shared decoder, BCE against the target mask each time.
    embeddings, resized = sam([s.plan.sam_image for s in reasoning])
    g = embeddings.shape[-2:]
    valid = [
        (max(1, round(h * g[0] / sam.frame[0])), max(1, round(w * g[1] / sam.frame[1]))) for h, w in resized
    ]
    grids = {
        role: [batch.latent_grids[s.spans[role].image] for s in reasoning]
        for role in (GROUNDED_NOISED, EDITED_NOISED)
    }
    # the text-conditioned mask is predicted for the samples that kept their textual grounding
    texts = [i for i, s in enumerate(reasoning) if GROUNDING_TEXT in s.spans]
    logits = {
        "mask_grounded": heads.visual_masks(
            embeddings,
            [final[s.spans[GROUNDED_NOISED].tokens] for s in reasoning],
            grids[GROUNDED_NOISED],
            valid,
        ),
        "mask_edited": heads.visual_masks(
            embeddings, [final[s.spans[EDITED_NOISED].tokens] for s in reasoning], grids[EDITED_NOISED], valid
        ),
    }
    if texts:
        states = [final[reasoning[i].spans[GROUNDING_TEXT].tokens] for i in texts]
        logits["mask_text"] = heads.text_masks(embeddings[texts], states)
    frames = [sam.frame_mask(s.plan.mask, r) for s, r in zip(reasoning, resized, strict=True)]
    if spec.mask_resolution == "input":
        targets = [(f > 0.5).float() for f in frames]
        logits = {
            k: F.interpolate(v[:, None], size=sam.frame, mode="bilinear")[:, 0] for k, v in logits.items()
        }
    else:
        targets = [binary_target(f, tuple(logits["mask_grounded"].shape[-2:])) for f in frames]
    samples = {
        "mask_text": texts,
        "mask_grounded": range(len(reasoning)),
        "mask_edited": range(len(reasoning)),
    }
    for part in MASK_PARTS:
        if part in logits:
            bces = [mask_bce(lg, targets[i]) for lg, i in zip(logits[part], samples[part], strict=True)]
            terms.sums[part] = torch.stack(bces).sum()
    terms.sums["mask"] = sum(terms.sums[p] for p in MASK_PARTS if p in terms.sums)

    # Alignment at the chosen layer: text-vision (Ltv) where the textual grounding survived CFG dropout,
    # vision-vision (Lvv) where the grounded image's ViT tokens did.
    tv, vv = [], []
    for s, grid in zip(reasoning, grids[EDITED_NOISED], strict=True):
        edited = layer[s.spans[EDITED_NOISED].tokens]
        if s.location_tokens is not None:
            coverage = mask_coverage(s.plan.mask, grid).to(edited.device)
            tv.append(text_vision_alignment(heads.pt, edited, coverage, target(layer[s.location_tokens])))
        vit = s.spans.get(GROUNDED_VIT)
        if vit is not None:
            goal = layer[vit.tokens] if spec.vv_target == "llm" else out.vit_features[vit.image]
            vit_grid = _vit_grid(s, config.vit.patch_size)
            vv.append(vision_vision_alignment(heads.pv, edited, grid, target(goal), vit_grid))
    if tv:
        terms.sums["tv"] = torch.stack(tv).sum()
    if vv:
        terms.sums["vv"] = torch.stack(vv).sum()
    return terms
