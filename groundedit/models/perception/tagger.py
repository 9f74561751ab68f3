"""RAM++ tagging: images in, (tag, probability) pairs above each tag's own threshold out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from groundedit.models.perception.preprocess import normalise, ram_batch
from groundedit.models.perception.ram_plus import RamPlus, RamPlusConfig
from groundedit.models.perception.runtime import resolve_device, resolve_dtype

# Official file names, looked for beside the checkpoint when no path is given.
RAM_TAGS_FILE = "ram_tag_list.txt"
RAM_THRESHOLDS_FILE = "ram_tag_list_threshold.txt"
# Ours: only checkpoints of other sizes (the tiny profile) carry one; the official release needs none.
RAM_CONFIG_FILE = "ram_plus_config.json"


def read_tag_list(path: str | Path) -> list[str]:
    """One tag per line, as the official ``ram_tag_list.txt``."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_thresholds(path: str | Path, num_tags: int, default: float = 0.68) -> np.ndarray:
    """Per-class thresholds, one float per line, as the official ``ram_tag_list_threshold.txt``.

    As in the official model, tags past the end of the file get ``default`` (RAM++'s 0.68).
    """
    values = [float(s) for s in Path(path).read_text(encoding="utf-8").split()]
    if len(values) > num_tags:
        raise ValueError(f"{path}: {len(values)} thresholds for {num_tags} tags")
    return np.asarray(values + [default] * (num_tags - len(values)), dtype=np.float32)


class Tagger:
    """RAM++ with its tag list and per-class thresholds, ready to tag batches of RGB images."""

    def __init__(
        self,
        model: RamPlus,
        tags: Sequence[str],
        thresholds: np.ndarray,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ):
        if len(tags) != model.config.num_tags or len(thresholds) != model.config.num_tags:
            raise ValueError(
                f"model has {model.config.num_tags} tags, tag list {len(tags)}, thresholds {len(thresholds)}"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tags = list(tags)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        tags_file: str | Path | None = None,
        thresholds_file: str | Path | None = None,
        config: RamPlusConfig | str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> Tagger:
        """Load an official-layout RAM++ ``.pth``.

        ``tags_file`` and ``thresholds_file`` default to the official file names beside the checkpoint.
        ``config`` is a :class:`RamPlusConfig` or the path of its JSON; by default ``ram_plus_config.json``
        beside the checkpoint if there is one, else the released Swin-L model's sizes.
        """
        from groundedit.models.perception.ram_plus_adapter import load_official_checkpoint

        here = Path(checkpoint).parent
        tags = read_tag_list(tags_file or here / RAM_TAGS_FILE)
        if config is None and (here / RAM_CONFIG_FILE).is_file():
            config = here / RAM_CONFIG_FILE
        if config is None:
            config = RamPlusConfig(num_tags=len(tags))
        elif not isinstance(config, RamPlusConfig):
            config = RamPlusConfig.from_json(config)
        model = RamPlus(config)
        load_official_checkpoint(checkpoint, model)
        thresholds = read_thresholds(thresholds_file or here / RAM_THRESHOLDS_FILE, len(tags))
        return cls(model, tags, thresholds, device=device, dtype=dtype)

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
