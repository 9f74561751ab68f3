"""Packing interleaved text and images into one sequence, with Bagel's attention and position rules.

A sample is a list of splits, each one attention block:

* text — ``<|im_start|> ids <|im_end|>``, causal; position ids advance by one per token;
* conditioning image (ViT or clean VAE) — ``<|vision_start|> tokens <|vision_end|>``, full attention inside;
  all its tokens share one position id, and the position advances by one after it;
* noised VAE image (the flow-matching target) — full attention inside, invisible to every other split;
  the position does not advance after it (the clean copy that may follow shares its position).

Every split sees all earlier splits of its sample (except noised ones). Samples of a pack never see each
other; position ids restart at 0 per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from PIL import Image
from torch import Tensor

from .blocks import grid_position_ids, patchify
from .config import BagelConfig
from .transforms import resize, to_rgb, to_tensor


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the chat and vision markers Bagel wraps splits in."""

    bos: int
    eos: int
    start_of_image: int
    end_of_image: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokens:
        names = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
        ids = [tokenizer.convert_tokens_to_ids(n) for n in names]
        missing = [n for n, i in zip(names, ids, strict=True) if i is None or i == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"tokenizer lacks Bagel's special tokens: {missing}")
        return cls(*ids)


@dataclass(frozen=True)
class Span:
    """Where one split sits in the pack: tokens [start, end) incl. markers; ``tokens`` = content only."""

    kind: str  # "text" | "vit" | "vae" | "noised"
    start: int
    end: int
    tokens: Tensor
    image: int | None = None  # index among the pack's ViT images (vit) or VAE images (vae, noised)


@dataclass
class PackedBatch:
    """Model inputs of one pack (see :class:`SequencePacker`); tensors on one device."""

    length: int
    position_ids: Tensor
    samples: list[tuple[int, int]]
    text_ids: Tensor
    text_index: Tensor
    ce_index: Tensor
    ce_labels: Tensor
    vit_patches: Tensor | None = None
    vit_position_ids: Tensor | None = None
    vit_seqlens: list[int] = field(default_factory=list)
    vit_index: Tensor | None = None
    vae_images: list[Tensor] = field(default_factory=list)
    latent_grids: list[tuple[int, int]] = field(default_factory=list)
    latent_position_ids: Tensor | None = None
    vae_index: Tensor | None = None
    timesteps: list[float | None] = field(default_factory=list)  # 0 = clean, None = draw at train time
    spans: list[Span] = field(default_factory=list)
    split_lens: list[list[int]] = field(default_factory=list)
    attn_modes: list[list[str]] = field(default_factory=list)
    vae_batching: str = "per_image"  # how Bagel.forward encodes vae_images (see Bagel.encode_images)

    def to(self, device: torch.device | str) -> PackedBatch:
        def move(v):
            if isinstance(v, Tensor):
                return v.to(device)
            if isinstance(v, list) and v and isinstance(v[0], Tensor):
                return [t.to(device) for t in v]
            return v

        return PackedBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


def sample_mask(split_lens: list[int], modes: list[str]) -> Tensor:
    """Dense attention mask [L, L] of one sample from its splits (modes 'causal', 'full', 'noise'): the
    rules written out. The forward never builds it (it attends split by split, ``attention.split_segments``);
    it is the reference the split-wise attention is tested against."""
    n = sum(split_lens)
    mask = torch.zeros(n, n, dtype=torch.bool)
    start = 0
    for length, mode in zip(split_lens, modes, strict=True):
        end = start + length
        mask[start:end, :start] = True
        block = torch.ones(length, length, dtype=torch.bool)
        mask[start:end, start:end] = block.tril() if mode == "causal" else block
        start = end
    start = 0
    for length, mode in zip(split_lens, modes, strict=True):
        end = start + length
        if mode == "noise":
            mask[:, start:end] = False
            mask[start:end, start:end] = True
        start = end
    return mask


VAE_BATCHING = ("per_image", "padded")


class SequencePacker:
    """Builds a :class:`PackedBatch` split by split; call :meth:`end_sample` after each sample.

    ``vae_batching`` says how the pack's VAE images are encoded: ``per_image`` (each alone) or ``padded``
    (zero-padded to the largest, one batch: the official trainer's way; padding leaks into the latents).
    """

    def __init__(self, config: BagelConfig, tokens: SpecialTokens, vae_batching: str = "per_image") -> None:
        if vae_batching not in VAE_BATCHING:
            raise ValueError(f"vae_batching must be one of {VAE_BATCHING}, not {vae_batching!r}")
        self.cfg, self.tok, self.vae_batching = config, tokens, vae_batching
        self._pos: list[int] = []
        self._text_ids: list[int] = []
        self._text_index: list[int] = []
        self._ce_index: list[int] = []
        self._ce_labels: list[int] = []
        self._vit: list[tuple[Tensor, Tensor, list[int]]] = []
        self._vae: list[tuple[Tensor, tuple[int, int], Tensor, list[int], float | None]] = []
        self._spans: list[Span] = []
        self._samples: list[tuple[int, int]] = []
        self._all_lens: list[list[int]] = []
        self._all_modes: list[list[str]] = []
        self._start_sample()

    def _start_sample(self) -> None:
        self._sample_start = len(self._pos)
        self._rope = 0
        self._lens: list[int] = []
        self._modes: list[str] = []

    def _marker(self, token: int) -> None:
        self._text_ids.append(token)
        self._text_index.append(len(self._pos))

    def _close(self, kind: str, start: int, tokens: list[int], mode: str, image: int | None = None) -> Span:
        span = Span(kind, start, len(self._pos), torch.tensor(tokens, dtype=torch.long), image)
        self._spans.append(span)
        self._lens.append(span.end - start)
        self._modes.append(mode)
        return span

    def add_text(self, ids: list[int], loss: bool = False) -> Span:
        """``bos ids eos``; with ``loss`` every token from bos to the last id is trained to predict the next."""
        start = len(self._pos)
        seq = [self.tok.bos, *ids, self.tok.eos]
        for tok in seq:
            self._marker(tok)
            self._pos.append(self._rope)
            self._rope += 1
        if loss:
            self._ce_index.extend(range(start, start + len(ids) + 1))
            self._ce_labels.extend([*ids, self.tok.eos])
        return self._close("text", start, list(range(start + 1, start + 1 + len(ids))), "causal")

    def _image_tokens(self, n: int) -> tuple[int, list[int]]:
        start = len(self._pos)
        self._marker(self.tok.start_of_image)
        idx = list(range(start + 1, start + 1 + n))
        self._pos.extend([self._rope] * (n + 1))
        self._marker(self.tok.end_of_image)
        self._pos.append(self._rope)
        return start, idx

    def add_vit_image(self, image: Tensor | Image.Image) -> Span:
        """A conditioning image for the understanding encoder (PIL images are resized by the ViT rule)."""
        if isinstance(image, Image.Image):
            image = to_tensor(resize(to_rgb(image), self.cfg.vit_image))
        p = self.cfg.vit.patch_size
        h, w = image.shape[1] // p, image.shape[2] // p
        if image.shape[1] % p or image.shape[2] % p:
            raise ValueError(f"ViT image {tuple(image.shape[1:])} is not a multiple of the patch size {p}")
        pos = grid_position_ids(h, w, self.cfg.vit.max_patches_per_side)
        start, idx = self._image_tokens(h * w)
        self._vit.append((patchify(image, p), pos, idx))
        self._rope += 1
        return self._close("vit", start, idx, "full", len(self._vit) - 1)

    def add_vae_image(
        self, image: Tensor | Image.Image, noised: bool = False, timestep: float | None = None
    ) -> Span:
        """A VAE image: clean (conditioning) or noised (flow target at ``timestep``, drawn if None)."""
        if isinstance(image, Image.Image):
            image = to_tensor(resize(to_rgb(image), self.cfg.vae_image))
        d = self.cfg.latent_downsample
        if image.shape[1] % d or image.shape[2] % d:
            raise ValueError(f"VAE image {tuple(image.shape[1:])} is not a multiple of {d}")
        h, w = image.shape[1] // d, image.shape[2] // d
        pos = grid_position_ids(h, w, self.cfg.max_latent_size)
        start, idx = self._image_tokens(h * w)
        self._vae.append((image, (h, w), pos, idx, timestep if noised else 0.0))
        if noised:
            return self._close("noised", start, idx, "noise", len(self._vae) - 1)
        self._rope += 1
        return self._close("vae", start, idx, "full", len(self._vae) - 1)

    def skip_image(self) -> None:
        """A conditioning image dropped for CFG training: only its position is kept (official rule)."""
        self._rope += 1

    def end_sample(self) -> None:
        if len(self._pos) == self._sample_start:
            raise ValueError("empty sample")
        self._samples.append((self._sample_start, len(self._pos)))
        self._all_lens.append(self._lens)
        self._all_modes.append(self._modes)
        self._start_sample()

    def build(self) -> PackedBatch:
        if len(self._pos) != self._sample_start:
            raise ValueError("the last sample is still open: call end_sample() first")

        def longs(v: list[int]) -> Tensor:
            return torch.tensor(v, dtype=torch.long)

        batch = PackedBatch(
            length=len(self._pos),
            position_ids=longs(self._pos),
            samples=self._samples,
            text_ids=longs(self._text_ids),
            text_index=longs(self._text_index),
            ce_index=longs(self._ce_index),
            ce_labels=longs(self._ce_labels),
            spans=self._spans,
            split_lens=self._all_lens,
            attn_modes=self._all_modes,
            vae_batching=self.vae_batching,
        )
        if self._vit:
            batch.vit_patches = torch.cat([v[0] for v in self._vit])
            batch.vit_position_ids = torch.cat([v[1] for v in self._vit])
            batch.vit_seqlens = [len(v[2]) for v in self._vit]
            batch.vit_index = longs([i for v in self._vit for i in v[2]])
        if self._vae:
            batch.vae_images = [v[0] for v in self._vae]
            batch.latent_grids = [v[1] for v in self._vae]
            batch.latent_position_ids = torch.cat([v[2] for v in self._vae])
            batch.vae_index = longs([i for v in self._vae for i in v[3]])
            batch.timesteps = [v[4] for v in self._vae]
        return batch
