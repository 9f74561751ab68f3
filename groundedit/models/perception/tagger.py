"""RAM++ tagging: images in, (tag, probability) pairs above each tag's own threshold out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from groundedit.models.perception.preprocess import normalise, ram_batch
from groundedit.models.perception.ram_plus import RamPlus, RamPlusConfig
from groundedit.models.perception.ram_vocab import Vocab, vocab_files
from groundedit.models.perception.runtime import resolve_device, resolve_dtype

# Ours: only checkpoints of other sizes (the tiny profile) carry one; the official release needs none.
RAM_CONFIG_FILE = "ram_plus_config.json"


class Tagger:
    """RAM++ with its tag list and per-class thresholds, ready to tag batches of RGB images."""

    def __init__(
        self,
        model: RamPlus,
        tags: Sequence[str],
        thresholds: np.ndarray,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        chinese: Sequence[str] | None = None,
    ):
        n = model.config.num_tags
        if len(tags) != n or len(thresholds) != n or (chinese is not None and len(chinese) != n):
            sizes = f"tag list {len(tags)}, thresholds {len(thresholds)}"
            sizes += f", Chinese names {len(chinese)}" if chinese is not None else ""
            raise ValueError(f"model has {n} tags, {sizes}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tags = list(tags)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self._chinese = dict(zip(self.tags, chinese, strict=True)) if chinese is not None else None

    def chinese_name(self, tag: str) -> str | None:
        """The tag's Chinese name when the vocabulary has a Chinese list, else None."""
        return None if self._chinese is None else self._chinese[tag]

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        tags_file: str | Path | None = None,
        thresholds_file: str | Path | None = None,
        config: RamPlusConfig | str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        chinese_file: str | Path | None = None,
    ) -> Tagger:
        """Load an official-layout RAM++ ``.pth``, alone (as the Hugging Face repository ships it) or
        with its own vocabulary beside it.

        The vocabulary files are chosen by :func:`~groundedit.models.perception.ram_vocab.vocab_files`:
        named ones, else the lists beside the checkpoint, else RAM++'s shipped lists. ``config`` is a
        :class:`RamPlusConfig` or the path of its JSON; by default ``ram_plus_config.json`` beside the
        checkpoint if there is one, else the sizes read from the checkpoint's tensor shapes.
        """
        from groundedit.models.perception.ram_plus_adapter import (
            config_from_state,
            load_official_state,
            read_official_state,
        )

        here = Path(checkpoint).parent
        vocab = Vocab.load(vocab_files(here, tags_file, thresholds_file, chinese_file))
        state = read_official_state(checkpoint)
        if config is None and (here / RAM_CONFIG_FILE).is_file():
            config = here / RAM_CONFIG_FILE
        if config is None:
            config = config_from_state({k: v.shape for k, v in state.items()}, len(vocab.tags))
        elif not isinstance(config, RamPlusConfig):
            config = RamPlusConfig.from_json(config)
        model = RamPlus(config)
        load_official_state(state, model)
        return cls(model, vocab.tags, vocab.thresholds, device=device, dtype=dtype, chinese=vocab.chinese)

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid probability of every tag for every image: float32 (len(images), num_tags)."""
        cfg = self.model.config
        batch = ram_batch(images, cfg.image_size)
        pixels = normalise(batch, None, 1 / 255, cfg.image_mean, cfg.image_std, self.device, self.dtype)
        logits = self.model(pixels)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def tag(self, images: Sequence[np.ndarray], max_tags: int | None = None) -> list[list[tuple[str, float]]]:
        """Per image, the tags whose probability exceeds their class threshold, most probable first.

        ``max_tags`` keeps only the most probable ones (None keeps all).
        """
        if len(images) == 0:
            return []
        out = []
        for probs in self.probabilities(images):
            above = np.flatnonzero(probs > self.thresholds)
            above = above[np.argsort(-probs[above], kind="stable")][:max_tags]
            out.append([(self.tags[i], float(probs[i])) for i in above])
        return out
