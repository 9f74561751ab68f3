"""Instruction-based image editing with Bagel: image + instruction → edited image, in batches.

The edit follows the official interleaved inferencer: the input image enters the context twice (clean VAE
latents for the generation expert, then SigLIP tokens), the instruction follows as text, and the output is
sampled by flow matching with guidance against a context without the instruction and one without the
image. Optionally the model first writes its plan as text ("think" mode) and the plan joins the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .blocks import unpatchify
from .context import Context, extend, generate_text, text_split, vae_split, vit_split
from .denoise import Guidance, denoise
from .loading import LoadedBagel, load_bagel
from .progress import EDITED, THINKING, BatchProgress, ProgressFn
from .transforms import resize, to_image, to_rgb, to_tensor

# Our wording of the planning instruction of think mode (the model was tuned with a prompt to this effect).
THINK_PROMPT = (
    "Before drawing, reason about the request: describe the plan for the image inside <think> </think> "
    "tags, then produce the image."
)


@dataclass
class EditResult:
    """One edit: the output image (the input's size) and, in think mode, the model's plan."""

    image: Image.Image
    thinking: str | None = None


class BagelEditor:
    """Edits images with a loaded Bagel. Build with :meth:`from_pretrained`; call :meth:`edit`."""

    def __init__(self, bundle: LoadedBagel) -> None:
        self.bundle = bundle
        self.model, self.vae, self.tokenizer = bundle.model, bundle.vae, bundle.tokenizer
        self.tokens, self.config = bundle.tokens, bundle.config

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> BagelEditor:
        """Load a Bagel folder in the official layout (or hub id); CUDA + bfloat16 when available."""
        return cls(load_bagel(path_or_id, device, dtype))

    def edit(self, images: list[Image.Image], instructions: list[str], **kwargs) -> list[Image.Image]:
        """Edited images, each the size of its input. Keyword arguments as in :meth:`edit_detailed`."""
        return [r.image for r in self.edit_detailed(images, instructions, **kwargs)]

    @torch.inference_mode()
    def edit_detailed(
        self,
        images: list[Image.Image],
        instructions: list[str],
        *,
        seed: int | list[int] = 0,
        steps: int = 50,
        cfg_text_scale: float = 4.0,
        cfg_img_scale: float = 2.0,
        timestep_shift: float = 3.0,
        cfg_interval: tuple[float, float] = (0.0, 1.0),
        cfg_renorm_type: str = "text_channel",
        cfg_renorm_min: float = 0.0,
        think: bool = False,
        max_think_tokens: int = 1000,
        think_prompt: str = THINK_PROMPT,
        system_prompt: str | None = None,
        batch_size: int = 8,
        on_progress: ProgressFn | None = None,
    ) -> list[EditResult]:
        """Edit each image by its instruction; up to ``batch_size`` edits share every forward.

        ``system_prompt`` opens every context when given (a fine-tuned model's own prompt); otherwise think
        mode opens with ``think_prompt`` and a plain edit with nothing, as the official inferencer does.

        Edit i draws its randomness from a generator seeded with ``seed + i`` (VAE posterior sample, then
        the starting noise), or with ``seed[i]`` when ``seed`` is a list, so an edit's result does not
        depend on the rest of the batch.

        ``on_progress`` receives an :class:`~.progress.EditProgress` per thinking token and denoising step
        of each batch.
        """
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images but {len(instructions)} instructions")
        seeds = list(seed) if isinstance(seed, list) else [seed + i for i in range(len(images))]
        if len(seeds) != len(images):
            raise ValueError(f"{len(seeds)} seeds for {len(images)} images")
        if steps < 2:
            raise ValueError("steps must be at least 2")
        guidance = Guidance(
            cfg_text_scale, cfg_img_scale, tuple(cfg_interval), cfg_renorm_type, cfg_renorm_min
        )
        results: list[EditResult] = []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            progress = BatchProgress(on_progress, start, len(seeds[chunk]), len(images))
            results += self._edit_batch(
                images[chunk],
                instructions[chunk],
                seeds[chunk],
                steps,
                timestep_shift,
                guidance,
                system_prompt if system_prompt is not None else (think_prompt if think else None),
                think,
                max_think_tokens,
                progress,
            )
            progress.finished()
        return results

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _append_text(self, contexts: list[Context], texts: list[str]) -> list[Context]:
        splits = [
            text_split(self.model, self._encode(s), self.tokens, c.rope)
            for s, c in zip(texts, contexts, strict=True)
        ]
        return extend(self.model, contexts, splits)

    def _contexts(self, latents, vit_inputs, instructions, prompt):
        """The three contexts of each edit: full, without the instruction, without the image."""
        model, tok, n = self.model, self.tokens, len(latents)
        full = [Context.empty(model)] * n
        if prompt is not None:
            full = self._append_text(full[:1], [prompt]) * n
        no_image = full
        full = extend(
            model, full, [vae_split(model, z, tok, c.rope) for z, c in zip(latents, full, strict=True)]
        )
        full = extend(
            model, full, [vit_split(model, x, tok, c.rope) for x, c in zip(vit_inputs, full, strict=True)]
        )
        no_text = full
        both = self._append_text(full + no_image, instructions * 2)
        return both[:n], no_text, both[n:]

    def _edit_batch(
        self, images, instructions, seeds, steps, shift, guidance, prompt, think, max_think, progress
    ):
        model, cfg, dev = self.model, self.config, self.model.device
        sources = [to_rgb(im) for im in images]
        vae_images = [resize(im, cfg.vae_image) for im in sources]
        vit_inputs = [to_tensor(resize(im, cfg.vit_image)) for im in vae_images]
        # One generator per edit, drawn in the official order: VAE posterior sample, then starting noise.
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        latents = [
            self.vae.encode(to_tensor(im)[None].to(dev, self.vae.dtype), generator=g)[0]
            for im, g in zip(vae_images, generators, strict=True)
        ]
        full, no_text, no_image = self._contexts(latents, vit_inputs, instructions, prompt)
        thoughts: list[str | None] = [None] * len(images)
        if think:
            plans = generate_text(
                model, full, self.tokens, max_think, on_token=progress.phase(THINKING, max_think)
            )
            progress.end()
            thoughts = [self.tokenizer.decode(ids) for ids in plans]
            full = self._append_text(full, thoughts)
        d, p = cfg.latent_downsample, cfg.latent_patch_size
        grids = [(im.height // d, im.width // d) for im in vae_images]
        noise = [
            torch.randn((h * w, cfg.latent_token_dim), generator=g)
            for (h, w), g in zip(grids, generators, strict=True)
        ]
        branches = [list(b) for b in zip(full, no_text, no_image, strict=True)]
        on_step = progress.phase(EDITED, steps - 1)  # ``steps`` timesteps, ``steps - 1`` denoising steps
        outs = denoise(model, branches, grids, noise, self.tokens, steps, shift, guidance, on_step)
        results = []
        for tokens_out, (h, w), src, thought in zip(outs, grids, sources, thoughts, strict=True):
            z = unpatchify(tokens_out, h, w, p)[None].to(self.vae.dtype)
            image = to_image(self.vae.decode(z)[0])
            if image.size != src.size:
                image = image.resize(src.size, Image.Resampling.BICUBIC)
            results.append(EditResult(image, thought))
        return results
