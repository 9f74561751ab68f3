"""Training sequences: an example becomes a plan of splits, plans are grouped into packs by token budget.

InterCoG sequence (grounding-reasoning mode, paper §3.2)::

    system(grounding) · source VAE · source ViT · instruction · "<think> 1. scene 2. target location" (CE)
    · grounded image noised (flow) · grounded VAE · grounded ViT · "3. edit 4. result </think>" (CE)
    · edited image noised (flow)

Plain edit: ``system(edit) · source VAE · source ViT · instruction · edited noised``; a multi-step Bagel row
repeats ``instruction · result noised · result VAE · result ViT`` and ends on the last result, noised.

CFG dropout follows the official trainer: a conditioning ViT image is dropped with ``cfg_dropout.vit``, a
clean VAE image with ``cfg_dropout.vae`` (a dropped image keeps only its position), and the instruction with
``cfg_dropout.text``. The system prompt and every split that carries a loss are never dropped: they are
what inference keeps in every guidance branch, or what is being learned. Each packed sample keeps its
spans by role, plus the token positions of the target-localization step, for the auxiliary losses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from groundedit.models.bagel import BagelConfig, PackedBatch, ResizeRule, SequencePacker, Span, SpecialTokens
from groundedit.models.bagel.transforms import resize, to_rgb, to_tensor

from .examples import EditExample
from .spec import SequenceSpec

# Our formatting of the reasoning text around the CoT steps (what a trained model learns to write).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STEP_LABELS = ("1. Scene: ", "2. Target location: ", "3. Edit: ", "4. After the edit: ")

# Roles of the splits the losses read.
GROUNDING_TEXT, DESCRIPTION_TEXT = "grounding_text", "description_text"
GROUNDED_NOISED, GROUNDED_VIT, EDITED_NOISED = "grounded_noised", "grounded_vit", "edited_noised"


@dataclass
class Op:
    """One split of a sample: text ids, or an image tensor [3, H, W] in [-1, 1]; ``skip`` = dropped image."""

    kind: str  # "text" | "vae" | "noised" | "vit" | "skip"
    role: str | None = None
    ids: list[int] = field(default_factory=list)
    loss: bool = False
    image: Tensor | None = None

    def n_tokens(self, config: BagelConfig) -> int:
        if self.kind == "text":
            return len(self.ids) + 2
        if self.kind == "skip":
            return 0
        stride = config.vit.patch_size if self.kind == "vit" else config.latent_downsample
        return self.image.shape[1] // stride * (self.image.shape[2] // stride) + 2


@dataclass
class SamplePlan:
    """A sample ready to pack; ``reasoning`` plans also carry the grounding targets."""

    key: str
    ops: list[Op]
    reasoning: bool
    n_tokens: int
    location: tuple[int, int] | None = None  # target-localization ids within the grounding text's ids
    mask: Tensor | None = None  # bool [H, W], the target mask at the source's size
    sam_image: np.ndarray | None = None  # the source, RGB uint8, for the frozen SAM encoder
    draw: int = 0  # the data mixture's (global) draw number: keys the forward's noise for this sample


@dataclass
class PackedSample:
    plan: SamplePlan
    spans: dict[str, Span]
    location_tokens: Tensor | None = None  # sequence positions of the target-localization step


@dataclass
class Pack:
    """One forward's worth of samples."""

    batch: PackedBatch
    samples: list[PackedSample]


class SequenceBuilder:
    """Turns examples into plans (tokenizing, resizing, CFG dropout)."""

    def __init__(
        self, tokenizer, config: BagelConfig, spec: SequenceSpec, grounding_prompt: str, edit_prompt: str
    ) -> None:
        self.tokenizer, self.config, self.spec = tokenizer, config, spec
        self.vae_rule = ResizeRule(**spec.vae_image.model_dump()) if spec.vae_image else config.vae_image
        self.vit_rule = ResizeRule(**spec.vit_image.model_dump()) if spec.vit_image else config.vit_image
        self.grounding_prompt, self.edit_prompt = self.encode(grounding_prompt), self.encode(edit_prompt)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _image(self, image: Image.Image, rule: ResizeRule) -> Tensor:
        return to_tensor(resize(to_rgb(image), rule))

    def _condition(self, image: Image.Image, rng: random.Random) -> list[Op]:
        """Clean VAE then ViT tokens of a conditioning image, each dropped with its CFG probability."""
        drop = self.spec.cfg_dropout
        vae = Op("skip") if rng.random() < drop.vae else Op("vae", image=self._image(image, self.vae_rule))
        vit = Op("skip") if rng.random() < drop.vit else Op("vit", image=self._image(image, self.vit_rule))
        return [vae, vit]

    def _instruction(self, text: str, rng: random.Random) -> list[Op]:
        return [] if rng.random() < self.spec.cfg_dropout.text else [Op("text", ids=self.encode(text))]

    def plan(self, example: EditExample, rng: random.Random) -> SamplePlan:
        """The sample's splits; InterCoG when the example has grounding and the reasoning draw says so."""
        reasoning = example.grounding is not None and rng.random() < self.spec.reasoning_fraction
        plan = self._intercog(example, rng) if reasoning else self._plain(example, rng)
        plan.n_tokens = sum(op.n_tokens(self.config) for op in plan.ops)
        return plan

    def _plain(self, ex: EditExample, rng: random.Random) -> SamplePlan:
        ops = [Op("text", ids=self.edit_prompt), *self._condition(ex.images[0], rng)]
        for step, (instruction, image) in enumerate(zip(ex.instructions, ex.images[1:], strict=True)):
            last = step == len(ex.instructions) - 1
            ops += self._instruction(instruction, rng)
            role = EDITED_NOISED if last else None
            ops.append(Op("noised", role=role, image=self._image(image, self.vae_rule)))
            if not last:
                ops += self._condition(image, rng)
        return SamplePlan(ex.key, ops, reasoning=False, n_tokens=0)

    def _intercog(self, ex: EditExample, rng: random.Random) -> SamplePlan:
        g = ex.grounding
        scene, target, editing, post = (s.strip() for s in g.cot)
        head = self.encode(f"{THINK_OPEN}\n{STEP_LABELS[0]}") + self.encode(scene)
        head += self.encode(f"\n{STEP_LABELS[1]}")
        location = self.encode(target)
        tail = self.encode(f"{STEP_LABELS[2]}") + self.encode(editing) + self.encode(f"\n{STEP_LABELS[3]}")
        tail += self.encode(post) + self.encode(f"\n{THINK_CLOSE}")
        grounded_vit = self._condition(g.grounded, rng)
        grounded_vit[1].role = GROUNDED_VIT
        ops = [
            Op("text", ids=self.grounding_prompt),
            *self._condition(ex.images[0], rng),
            *self._instruction(ex.instructions[0], rng),
            Op("text", role=GROUNDING_TEXT, ids=head + location, loss=True),
            Op("noised", role=GROUNDED_NOISED, image=self._image(g.grounded, self.vae_rule)),
            *grounded_vit,
            Op("text", role=DESCRIPTION_TEXT, ids=tail, loss=True),
            Op("noised", role=EDITED_NOISED, image=self._image(ex.images[1], self.vae_rule)),
        ]
        return SamplePlan(
            ex.key,
            ops,
            reasoning=True,
            n_tokens=0,
            location=(len(head), len(head) + len(location)),
            mask=torch.from_numpy(g.mask),
            sam_image=np.asarray(to_rgb(ex.images[0])),
        )


def group_plans(plans: list[SamplePlan], max_tokens: int) -> list[list[SamplePlan]]:
    """Consecutive plans grouped greedily so no group exceeds ``max_tokens`` (a longer plan goes alone)."""
    groups: list[list[SamplePlan]] = []
    used = max_tokens + 1
    for plan in plans:
        if used + plan.n_tokens > max_tokens:
            groups.append([])
            used = 0
        groups[-1].append(plan)
        used += plan.n_tokens
    return groups


def build_pack(
    plans: list[SamplePlan], config: BagelConfig, tokens: SpecialTokens, vae_batching: str = "per_image"
) -> Pack:
    """Pack plans into one :class:`PackedBatch`, recording each sample's spans by role."""
    packer = SequencePacker(config, tokens, vae_batching)
    samples = []
    for plan in plans:
        spans: dict[str, Span] = {}
        for op in plan.ops:
            if op.kind == "text":
                span = packer.add_text(op.ids, loss=op.loss)
            elif op.kind == "vit":
                span = packer.add_vit_image(op.image)
            elif op.kind in ("vae", "noised"):
                span = packer.add_vae_image(op.image, noised=op.kind == "noised")
            else:
                packer.skip_image()
                continue
            if op.role is not None:
                spans[op.role] = span
        packer.end_sample()
        location = None
        if plan.location is not None:
            location = spans[GROUNDING_TEXT].tokens[plan.location[0] : plan.location[1]]
        samples.append(PackedSample(plan, spans, location))
    return Pack(packer.build(), samples)
