"""Training sequences: an example becomes a plan of splits, plans are grouped into packs by token budget.

InterCoG sequence (grounding-reasoning mode, paper §3.2)::

    system(grounding) · source VAE · source ViT · instruction · "<think> 1. scene 2. target location" (CE)
    · grounded image noised (flow) · grounded VAE · grounded ViT · "3. edit 4. result </think>" (CE)
    · edited image noised (flow)

Plain edit: ``system(edit) · source VAE · source ViT · instruction · edited noised``; a multi-step Bagel row
repeats ``instruction · result noised · result VAE · result ViT`` and ends on the last result, noised.
Text-to-image (Bagel ``t2i_pretrain``): ``caption · image noised``. Understanding (Bagel ``vlm_sft``): the
conversation's texts and ViT images in order, CE on the answers. These two follow the official loaders:
no system prompt.

CFG dropout (probabilities ``cfg_dropout``, the official trainer's 0.1 / 0.3 / 0.3) trains the guidance
branches inference uses. A conditioning image loses its clean VAE copy with ``vae`` and its ViT copy with
``vit`` (a dropped image keeps its position, as officially). The text before a generated image — the
text since the last image: the instruction of an edit step, the caption, and in InterCoG the instruction
with the textual grounding before the grounded image, the editing description before the edited image —
is dropped as one with ``text`` (it leaves no trace, as officially): that is the text-free branch
``groundedit edit`` guides with. The system prompt, the noised targets and understanding samples are
never dropped. The rule that keeps CE honest: **a text carries CE only if nothing before it in its
sample was dropped** — text is read causally, so it depends on every split before it, and the official
trainer likewise never drops a condition in a sample that carries CE. Whether a sample fits the budget
is decided on its length with nothing dropped (``SamplePlan.full_tokens``), so the same sample is always
kept or always skipped. Each packed sample keeps its spans by role, plus the token positions of the
target-localization step, for the auxiliary losses.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from groundedit.models.bagel import BagelConfig, PackedBatch, ResizeRule, SequencePacker, Span, SpecialTokens
from groundedit.models.bagel.transforms import resize, to_rgb, to_tensor

from .examples import CaptionExample, ConversationExample, EditExample, Example, Utterance
from .spec import ImageRule, SequenceSpec

# Our formatting of the reasoning text around the CoT steps (what a trained model learns to write).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STEP_LABELS = ("1. Scene: ", "2. Target location: ", "3. Edit: ", "4. After the edit: ")

# Roles of the splits the losses (and tests) read.
GROUNDING_TEXT, DESCRIPTION_TEXT = "grounding_text", "description_text"
GROUNDED_NOISED, GROUNDED_VIT, EDITED_NOISED = "grounded_noised", "grounded_vit", "edited_noised"
INSTRUCTION = "instruction"

# Dropped splits: an image keeps its position ("skip"), a text leaves no trace ("cut"), as officially.
DROPPED = ("skip", "cut")


@dataclass
class Op:
    """One split of a sample: text ids, or an image tensor [3, H, W] in [-1, 1]. A dropped split is
    ``skip`` (image) or ``cut`` (text) and keeps in ``full`` the tokens it would have had."""

    kind: str  # "text" | "vae" | "noised" | "vit" | "skip" | "cut"
    role: str | None = None
    ids: list[int] = field(default_factory=list)
    loss: bool = False
    image: Tensor | None = None
    full: int = 0

    def n_tokens(self, config: BagelConfig) -> int:
        if self.kind == "text":
            return len(self.ids) + 2
        if self.kind in DROPPED:
            return 0
        stride = config.vit.patch_size if self.kind == "vit" else config.latent_downsample
        return self.image.shape[1] // stride * (self.image.shape[2] // stride) + 2

    def full_tokens(self, config: BagelConfig) -> int:
        return self.full if self.kind in DROPPED else self.n_tokens(config)


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
    full_tokens: int = 0  # the sample's length with nothing dropped: what the budget is checked against
    source: str = ""  # the --data source it came from
    recipe: str = ""  # the groundedit recipe of a sample from our shards ("" for other kinds)


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


def resize_rule(rule: ImageRule | None, default: ResizeRule) -> ResizeRule:
    return ResizeRule(**rule.model_dump(exclude_none=True)) if rule else default


class SequenceBuilder:
    """Turns examples into plans (tokenizing, resizing, CFG dropout)."""

    def __init__(
        self, tokenizer, config: BagelConfig, spec: SequenceSpec, grounding_prompt: str, edit_prompt: str
    ) -> None:
        self.tokenizer, self.config, self.spec = tokenizer, config, spec
        self.vae_rule = resize_rule(spec.vae_image, config.vae_image)
        self.vit_rule = resize_rule(spec.vit_image, config.vit_image)
        self.vlm_rule = resize_rule(spec.vlm_image, self.vit_rule)
        self.grounding_prompt, self.edit_prompt = self.encode(grounding_prompt), self.encode(edit_prompt)
        self._planners = {
            EditExample: self._edit,
            CaptionExample: self._t2i,
            ConversationExample: self._conversation,
        }

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _image(self, image: Image.Image, rule: ResizeRule) -> Tensor:
        return to_tensor(resize(to_rgb(image), rule))

    def _dropped_image(self, image: Image.Image, rule: ResizeRule, stride: int) -> Op:
        w, h = rule.target_size(*image.size)
        return Op("skip", full=(w // stride) * (h // stride) + 2)

    def _condition(self, image: Image.Image, rng: random.Random) -> list[Op]:
        """Clean VAE then ViT tokens of a conditioning image, each dropped with its CFG probability."""
        drop, cfg = self.spec.cfg_dropout, self.config
        if rng.random() < drop.vae:
            vae = self._dropped_image(image, self.vae_rule, cfg.latent_downsample)
        else:
            vae = Op("vae", image=self._image(image, self.vae_rule))
        if rng.random() < drop.vit:
            vit = self._dropped_image(image, self.vit_rule, cfg.vit.patch_size)
        else:
            vit = Op("vit", image=self._image(image, self.vit_rule))
        return [vae, vit]

    def _text(self, ids: list[int], dropped: bool, role: str | None = None, loss: bool = False) -> Op:
        return (
            Op("cut", role=role, full=len(ids) + 2) if dropped else Op("text", role=role, ids=ids, loss=loss)
        )

    def _drops_text(self, rng: random.Random) -> bool:
        return rng.random() < self.spec.cfg_dropout.text

    def plan(self, example: Example, rng: random.Random) -> SamplePlan:
        """The sample's splits (InterCoG when an edit has grounding and the reasoning draw says so)."""
        plan = self._planners[type(example)](example, rng)
        dropped = False
        for op in plan.ops:  # a text depends on every split before it: no CE once one was dropped
            dropped = dropped or op.kind in DROPPED
            op.loss = op.loss and not dropped
        plan.n_tokens = sum(op.n_tokens(self.config) for op in plan.ops)
        plan.full_tokens = sum(op.full_tokens(self.config) for op in plan.ops)
        plan.source = example.source
        plan.recipe = getattr(example, "recipe", "")
        return plan

    def _edit(self, ex: EditExample, rng: random.Random) -> SamplePlan:
        reasoning = ex.grounding is not None and rng.random() < self.spec.reasoning_fraction
        return self._intercog(ex, rng) if reasoning else self._plain(ex, rng)

    def _plain(self, ex: EditExample, rng: random.Random) -> SamplePlan:
        ops = [Op("text", ids=self.edit_prompt), *self._condition(ex.images[0], rng)]
        for step, (instruction, image) in enumerate(zip(ex.instructions, ex.images[1:], strict=True)):
            last = step == len(ex.instructions) - 1
            ops.append(self._text(self.encode(instruction), self._drops_text(rng), INSTRUCTION))
            ops.append(
                Op("noised", role=EDITED_NOISED if last else None, image=self._image(image, self.vae_rule))
            )
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
        source = self._condition(ex.images[0], rng)
        grounding_cut = self._drops_text(rng)  # the instruction and the textual grounding go together
        grounded = self._condition(g.grounded, rng)
        grounded[1].role = GROUNDED_VIT
        ops = [
            Op("text", ids=self.grounding_prompt),
            *source,
            self._text(self.encode(ex.instructions[0]), grounding_cut, INSTRUCTION),
            self._text(head + location, grounding_cut, GROUNDING_TEXT, loss=True),
            Op("noised", role=GROUNDED_NOISED, image=self._image(g.grounded, self.vae_rule)),
            *grounded,
            self._text(tail, self._drops_text(rng), DESCRIPTION_TEXT, loss=True),
            Op("noised", role=EDITED_NOISED, image=self._image(ex.images[1], self.vae_rule)),
        ]
        return SamplePlan(
            ex.key,
            ops,
            reasoning=True,
            n_tokens=0,
            location=None if grounding_cut else (len(head), len(head) + len(location)),
            mask=torch.from_numpy(g.mask),
            sam_image=np.asarray(to_rgb(ex.images[0])),
        )

    def _t2i(self, ex: CaptionExample, rng: random.Random) -> SamplePlan:
        ops = [
            self._text(self.encode(ex.caption), self._drops_text(rng), INSTRUCTION),
            Op("noised", image=self._image(ex.image, self.vae_rule)),
        ]
        return SamplePlan(ex.key, ops, reasoning=False, n_tokens=0)

    def _conversation(self, ex: ConversationExample, rng: random.Random) -> SamplePlan:
        rule = self.vlm_rule
        if len(ex.images) > 1:  # the official rule shares the pixel cap among a sample's images
            rule = dataclasses.replace(rule, max_pixels=rule.max_pixels / len(ex.images))
        ops = [
            Op("text", ids=self.encode(p.text), loss=p.trained)
            if isinstance(p, Utterance)
            else Op("vit", image=self._image(ex.images[p], rule))
            for p in ex.parts
        ]
        return SamplePlan(ex.key, ops, reasoning=False, n_tokens=0)


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
            elif op.kind == "skip":
                packer.skip_image()
                continue
            else:  # a dropped text leaves no trace
                continue
            if op.role is not None:
                spans[op.role] = span
        packer.end_sample()
        location = None
        if plan.location is not None:
            location = spans[GROUNDING_TEXT].tokens[plan.location[0] : plan.location[1]]
        samples.append(PackedSample(plan, spans, location))
    return Pack(packer.build(), samples)
