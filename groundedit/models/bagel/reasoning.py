"""InterCoG reasoning edits with a fine-tuned Bagel: the model grounds the target before it edits.

The context opens with the grounding-reasoning system prompt, then the source image (clean VAE latents,
then SigLIP tokens) and the instruction, as in training. The model then

1. writes the textual grounding (``<think>``, scene, target location),
2. draws the grounded image (the source with the target marked) by flow matching,
3. reads that image back (clean VAE latents and SigLIP tokens) and writes the editing description
   (edit, result, ``</think>``),
4. draws the edited image.

Guidance follows the official think mode: the text branch is the context as it stood right after the last
image was added (no instruction or reasoning after it), the image branch the system prompt and the
instruction without any image. Edits of a batch run together in every forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from .blocks import unpatchify
from .context import Context, generate_text, vae_split, vit_split
from .context import extend as extend_context
from .denoise import Guidance, denoise
from .inference import BagelEditor
from .progress import DESCRIPTION, EDITED, GROUNDED, GROUNDING, BatchProgress, ProgressFn
from .transforms import resize, to_image, to_rgb, to_tensor


@dataclass
class ReasoningResult:
    """The four artifacts of one reasoning edit (images at the input's size)."""

    grounding: str
    grounded: Image.Image
    description: str
    edited: Image.Image


class ReasoningEditor:
    """Wraps a :class:`BagelEditor` with the grounding-reasoning system prompt a checkpoint was trained on."""

    def __init__(self, editor: BagelEditor, system_prompt: str) -> None:
        self.editor, self.system_prompt = editor, system_prompt

    @torch.inference_mode()
    def edit(
        self,
        images: list[Image.Image],
        instructions: list[str],
        *,
        seed: int = 0,
        steps: int = 50,
        cfg_text_scale: float = 4.0,
        cfg_img_scale: float = 2.0,
        timestep_shift: float = 3.0,
        cfg_renorm_type: str = "text_channel",
        max_text_tokens: int = 1000,
        batch_size: int = 8,
        on_progress: ProgressFn | None = None,
    ) -> list[ReasoningResult]:
        """Reason and edit each image; edit i draws its randomness from a generator seeded ``seed + i``.

        ``on_progress`` receives an :class:`~.progress.EditProgress` per text token and denoising step of
        each phase (grounding text, grounded image, editing description, edited image) of each batch."""
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images but {len(instructions)} instructions")
        if steps < 2:
            raise ValueError("steps must be at least 2")
        guidance = Guidance(cfg_text_scale, cfg_img_scale, (0.0, 1.0), cfg_renorm_type)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            seeds = [seed + i for i in range(start, start + len(images[chunk]))]
            progress = BatchProgress(on_progress, start, len(seeds), len(images))
            results += self._batch(
                images[chunk],
                instructions[chunk],
                seeds,
                steps,
                timestep_shift,
                guidance,
                max_text_tokens,
                progress,
            )
            progress.finished()
        return results

    def _add_images(self, contexts: list[Context], images: list[Image.Image], generators) -> list[Context]:
        """Append each image's clean VAE latents, then its SigLIP tokens (the training order)."""
        e = self.editor
        model, dev = e.model, e.model.device
        latents = [
            e.vae.encode(to_tensor(im)[None].to(dev, e.vae.dtype), generator=g)[0]
            for im, g in zip(images, generators, strict=True)
        ]
        contexts = extend_context(
            model,
            contexts,
            [vae_split(model, z, e.tokens, c.rope) for z, c in zip(latents, contexts, strict=True)],
        )
        vit = [to_tensor(resize(im, e.config.vit_image)) for im in images]
        return extend_context(
            model,
            contexts,
            [vit_split(model, x, e.tokens, c.rope) for x, c in zip(vit, contexts, strict=True)],
        )

    def _write(
        self, contexts: list[Context], max_tokens: int, progress: BatchProgress, phase: str
    ) -> list[str]:
        on_token = progress.phase(phase, max_tokens)
        ids = generate_text(self.editor.model, contexts, self.editor.tokens, max_tokens, on_token=on_token)
        progress.end()
        return [self.editor.tokenizer.decode(i) for i in ids]

    def _draw(self, branches, sizes, generators, steps, shift, guidance, on_step) -> list[Image.Image]:
        e = self.editor
        d, p = e.config.latent_downsample, e.config.latent_patch_size
        grids = [(h // d, w // d) for w, h in sizes]
        noise = [
            torch.randn((h * w, e.config.latent_token_dim), generator=g)
            for (h, w), g in zip(grids, generators, strict=True)
        ]
        outs = denoise(e.model, branches, grids, noise, e.tokens, steps, shift, guidance, on_step)
        return [
            to_image(e.vae.decode(unpatchify(z, h, w, p)[None].to(e.vae.dtype))[0])
            for z, (h, w) in zip(outs, grids, strict=True)
        ]

    def _batch(
        self, images, instructions, seeds, steps, shift, guidance, max_tokens, progress: BatchProgress
    ) -> list[ReasoningResult]:
        e, n = self.editor, len(images)
        sources = [to_rgb(im) for im in images]
        vae_images = [resize(im, e.config.vae_image) for im in sources]
        sizes = [im.size for im in vae_images]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        opening = e._append_text([Context.empty(e.model)], [self.system_prompt]) * n
        no_image = e._append_text(opening, instructions)
        no_text = self._add_images(opening, vae_images, generators)
        full = e._append_text(no_text, instructions)

        # ``steps`` timesteps make ``steps - 1`` denoising steps (see ``denoise.schedule``).
        grounding = self._write(full, max_tokens, progress, GROUNDING)
        full = e._append_text(full, grounding)
        branches = [list(b) for b in zip(full, no_text, no_image, strict=True)]
        on_step = progress.phase(GROUNDED, steps - 1)
        grounded = self._draw(branches, sizes, generators, steps, shift, guidance, on_step)

        no_text = full = self._add_images(full, grounded, generators)
        description = self._write(full, max_tokens, progress, DESCRIPTION)
        full = e._append_text(full, description)
        branches = [list(b) for b in zip(full, no_text, no_image, strict=True)]
        on_step = progress.phase(EDITED, steps - 1)
        edited = self._draw(branches, sizes, generators, steps, shift, guidance, on_step)

        def back(im: Image.Image, src: Image.Image) -> Image.Image:
            return im if im.size == src.size else im.resize(src.size, Image.Resampling.BICUBIC)

        return [
            ReasoningResult(g, back(gi, s), d, back(ei, s))
            for g, gi, d, ei, s in zip(grounding, grounded, description, edited, sources, strict=True)
        ]
