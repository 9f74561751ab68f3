"""SAM (transformers ``SamModel``): boxes -> one mask per box, the best of SAM's three by predicted IoU.

The image encoder, which holds nearly all of SAM's cost, runs once per image (batched across images);
the prompt encoder and mask decoder then take all of an image's boxes in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from groundedit.models.perception.preprocess import (
    ImageProcessorSettings,
    as_rgb_array,
    sam_batch,
    sam_masks_to_image,
)
from groundedit.models.perception.runtime import OnDevice, load_pretrained, resolve_device, resolve_dtype

# Boxes whose masks are upsampled to full image size at a time (bounds memory on large images).
_UPSAMPLE_CHUNK = 16


def load_sam(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[object, ImageProcessorSettings]:
    """SAM (``transformers.SamModel``, on the CPU in ``dtype``) and its processor settings, from a hub id or a
    ``save_pretrained`` directory. The grounding stage and training both load SAM through this."""
    return load_pretrained("SamModel", path, dtype)


class SamSegmenter(OnDevice):
    """Segments boxes with SAM; returns boolean masks at image size and SAM's predicted IoU per mask."""

    def __init__(self, model, settings: ImageProcessorSettings, device=None, dtype=None, batch_size: int = 4):
        super().__init__(model, settings, device, dtype, batch_size)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, dtype=None, **kwargs) -> SamSegmenter:
        """Load model and processor settings from a hub id or a ``save_pretrained`` directory."""
        device = resolve_device(device)
        model, settings = load_sam(path, resolve_dtype(dtype, device))
        return cls(model, settings, device=device, dtype=dtype, **kwargs)

    @torch.inference_mode()
    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: masks bool (n, H, W) and predicted IoUs (n,) for its ``n`` boxes (xyxy pixels)."""
        images = [as_rgb_array(im) for im in images]
        boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        results = [(np.zeros((0, *im.shape[:2]), bool), np.zeros(0, np.float32)) for im in images]
        todo = [i for i, b in enumerate(boxes) if len(b)]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch, valid, resized = sam_batch([images[i] for i in chunk], self.settings)
            pixels = self.settings.to_pixels(batch, valid, self.device, self.dtype)
            embeddings = self.model.get_image_embeddings(pixels)
            for k, i in enumerate(chunk):
                results[i] = self._decode(
                    embeddings[k : k + 1], boxes[i], images[i].shape[:2], resized[k], pixels.shape[2:]
                )
        return results

    def _decode(self, embedding, boxes, image_hw, resized_hw, pad_hw):
        # Box prompts live in the resized (pre-padding) frame, as SamProcessor puts them.
        scale = np.array([resized_hw[1] / image_hw[1], resized_hw[0] / image_hw[0]] * 2, dtype=np.float32)
        prompts = torch.from_numpy(boxes * scale)[None].to(self.device, self.dtype)
        out = self.model(image_embeddings=embedding, input_boxes=prompts, multimask_output=True)
        iou = out.iou_scores[0].float()  # (n, 3)
        best = iou.argmax(dim=-1)
        rows = torch.arange(len(boxes), device=iou.device)
        low_res = out.pred_masks[0][rows, best]  # (n, h, w) logits
        masks = np.concatenate(
            [
                sam_masks_to_image(low_res[s : s + _UPSAMPLE_CHUNK], tuple(pad_hw), resized_hw, image_hw)
                for s in range(0, len(boxes), _UPSAMPLE_CHUNK)
            ]
        )
        return masks, iou[rows, best].cpu().numpy()
