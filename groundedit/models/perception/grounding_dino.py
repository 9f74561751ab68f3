"""Grounding DINO (transformers ``GroundingDinoForObjectDetection``): tags -> scored, tagged boxes.

Scores follow the official Grounded-SAM demo: a box's score is its highest token probability over the
whole prompt, and a box is kept when that exceeds the box threshold; its tag is then read from the
tokens above the text threshold (see :mod:`phrases`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from groundedit.models.perception.phrases import TagPrompt, assign_tags, chunk_tags, tag_scores, token_tags
from groundedit.models.perception.preprocess import (
    ImageProcessorSettings,
    as_rgb_array,
    dino_resized,
    pad_batch,
)
from groundedit.models.perception.runtime import OnDevice, load_pretrained, resolve_device, resolve_dtype


@dataclass(frozen=True)
class Detection:
    """One Grounding DINO box in pixels (clipped to the image), with its tag and scores."""

    tag: str
    box_xyxy: tuple[float, float, float, float]
    box_score: float
    text_score: float


class GroundingDinoDetector(OnDevice):
    """Runs Grounding DINO on (image, tag-prompt) pairs, batching pairs across images."""

    def __init__(
        self,
        model,
        tokenizer,
        settings: ImageProcessorSettings,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_text_tokens: int | None = None,
        batch_size: int = 8,
    ):
        super().__init__(model, settings, device, dtype, batch_size)
        self.tokenizer = tokenizer
        # The model attends to at most max_text_len tokens; prompts are chunked to fit.
        self.max_text_tokens = min(max_text_tokens or model.config.max_text_len, model.config.max_text_len)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, dtype=None, **kwargs) -> GroundingDinoDetector:
        """Load model, tokenizer and processor settings from a hub id or a ``save_pretrained`` directory."""
        from transformers import AutoTokenizer

        device = resolve_device(device)
        model, settings = load_pretrained(
            "GroundingDinoForObjectDetection", path, resolve_dtype(dtype, device)
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        return cls(model, tokenizer, settings, device=device, dtype=dtype, **kwargs)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def detect(
        self,
        images: Sequence[np.ndarray],
        tags: Sequence[Sequence[str]],
        box_threshold: float,
        text_threshold: float,
    ) -> list[tuple[list[Detection], Counter]]:
        """Per image: boxes whose score exceeds ``box_threshold`` and that have a tag above
        ``text_threshold``, and the counts of candidates dropped on the way."""
        images = [as_rgb_array(im) for im in images]
        results: list[tuple[list[Detection], Counter]] = [([], Counter()) for _ in images]
        pairs: list[tuple[int, TagPrompt]] = []
        for i, image_tags in enumerate(tags):
            prompts, too_long = chunk_tags(image_tags, self.count_tokens, self.max_text_tokens)
            if too_long:
                results[i][1]["tag_too_long"] += len(too_long)
            pairs += [(i, p) for p in prompts]
        resized = {i: dino_resized(images[i], self.settings) for i in {i for i, _ in pairs}}
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            outputs = self._forward([resized[i] for i, _ in batch], [p.text for _, p in batch])
            for (i, prompt), (probs, boxes, offsets) in zip(batch, outputs, strict=True):
                kept, dropped = self._decode(
                    probs, boxes, offsets, prompt, images[i].shape[:2], box_threshold, text_threshold
                )
                results[i][0].extend(kept)
                results[i][1].update(dropped)
        return results

    @torch.inference_mode()
    def _forward(self, arrays: list[np.ndarray], texts: list[str]):
        batch, pixel_mask = pad_batch(arrays)
        enc = self.tokenizer(texts, padding="longest", return_offsets_mapping=True, return_tensors="pt")
        out = self.model(
            pixel_values=self.settings.to_pixels(batch, pixel_mask, self.device, self.dtype),
            pixel_mask=torch.from_numpy(pixel_mask).to(self.device),
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device),
            token_type_ids=enc["token_type_ids"].to(self.device) if "token_type_ids" in enc else None,
        )
        length = enc["input_ids"].shape[1]
        probs = out.logits[..., :length].float().sigmoid().cpu().numpy()
        boxes = out.pred_boxes.float().cpu().numpy()
        return list(zip(probs, boxes, enc["offset_mapping"].tolist(), strict=True))

    @staticmethod
    def _decode(probs, boxes, offsets, prompt: TagPrompt, image_hw, box_threshold, text_threshold):
        """Turn one pair's raw outputs into detections; boxes are cxcywh relative to the unpadded image."""
        box_scores = probs.max(axis=1)
        keep = np.flatnonzero(box_scores > box_threshold)
        owner = token_tags(offsets, prompt.spans)
        labels, text = assign_tags(tag_scores(probs[keep], owner, len(prompt.tags)), text_threshold)
        h, w = image_hw
        cx, cy, bw, bh = boxes[keep].T
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * [w, h, w, h]
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        kept = [
            Detection(
                prompt.tags[label],
                tuple(float(v) for v in xyxy[k]),
                float(box_scores[keep[k]]),
                float(text[k]),
            )
            for k, label in enumerate(labels)
            if label >= 0
        ]
        return kept, +Counter({"no_tag_above_text_threshold": int((labels < 0).sum())})
