"""The auxiliary modules of the grounding losses (dropped at inference) and the frozen SAM encoder.

* :class:`SamEncoder` — SAM's image encoder, frozen: E for each source image, in SAM's input frame
  (longest side resized to SAM's size, zero-padded bottom-right), plus each target mask in that frame.
* :class:`GroundingHeads` — one mask decoder shared by the three conditions, initialised from SAM's, and
  the projectors: TP (text states → one prompt token the decoder cross-attends to), VP (noised VAE states
  → a map added to E), Pt and Pv (the alignment losses' MLPs). All are three linear layers with GELUs.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundedit.models.perception.preprocess import ImageProcessorSettings, sam_batch

from .losses import resize_tokens


class Projector(nn.Sequential):
    """Linear → GELU → Linear → GELU → Linear."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__(
            nn.Linear(d_in, d_hidden),
            nn.GELU(),
            nn.Linear(d_hidden, d_hidden),
            nn.GELU(),
            nn.Linear(d_hidden, d_out),
        )


class SamEncoder:
    """Frozen SAM image encoder; not a module of the trained state (it never changes)."""

    def __init__(self, sam_model, settings: ImageProcessorSettings, device: torch.device) -> None:
        self.encoder = sam_model.vision_encoder.to(device).eval().requires_grad_(False)
        self.settings, self.device = settings, device
        pad = settings.pad_size or {
            "height": settings.size["longest_edge"],
            "width": settings.size["longest_edge"],
        }
        self.frame = (pad["height"], pad["width"])

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> tuple[Tensor, list[tuple[int, int]]]:
        """E [B, C, g, g] of RGB uint8 images, and each image's resized (h, w) inside the frame."""
        batch, valid, resized = sam_batch(images, self.settings)
        pixels = self.settings.to_pixels(batch, valid, self.device, torch.float32)
        return self.encoder(pixel_values=pixels).last_hidden_state.float(), [tuple(r) for r in resized]

    def frame_mask(self, mask: Tensor, resized: tuple[int, int]) -> Tensor:
        """A target mask [H, W] (bool) placed like its image in SAM's frame: [frame_h, frame_w] in [0, 1]."""
        m = F.interpolate(mask.float()[None, None], size=resized, mode="bilinear", align_corners=False)[0, 0]
        return F.pad(m, (0, self.frame[1] - resized[1], 0, self.frame[0] - resized[0])).to(self.device)


class GroundingHeads(nn.Module):
    """Mask decoder + projectors; ``llm_hidden`` is Bagel's width, ``vv_dim`` the Lvv target's width."""

    def __init__(self, sam_model, llm_hidden: int, vv_dim: int, hidden: int) -> None:
        super().__init__()
        c = sam_model.config.mask_decoder_config.hidden_size
        self.mask_decoder = copy.deepcopy(sam_model.mask_decoder).requires_grad_(True)
        # Only the single-mask output is used: the IoU head and the multimask outputs' hypernetworks get no
        # gradient, so they stay frozen (and out of the optimizer).
        self.mask_decoder.iou_prediction_head.requires_grad_(False)
        for mlp in self.mask_decoder.output_hypernetworks_mlps[1:]:
            mlp.requires_grad_(False)
        self.no_mask_embed = nn.Parameter(sam_model.prompt_encoder.no_mask_embed.weight.detach().clone())
        with torch.no_grad():
            pe = sam_model.get_image_wide_positional_embeddings().detach().clone()
        self.register_buffer("image_pe", pe, persistent=False)
        self.tp, self.vp = Projector(llm_hidden, hidden, c), Projector(llm_hidden, hidden, c)
        self.pt, self.pv = Projector(llm_hidden, hidden, llm_hidden), Projector(llm_hidden, hidden, vv_dim)

    def _decode(self, embeddings: Tensor, sparse: Tensor | None, dense: Tensor) -> Tensor:
        pe = self.image_pe.expand(embeddings.shape[0], -1, -1, -1)
        masks, _ = self.mask_decoder(embeddings, pe, sparse, dense, multimask_output=False)
        return masks[:, 0, 0]  # [B, 4g, 4g] logits of the single-mask output

    def _no_mask(self, embeddings: Tensor) -> Tensor:
        return self.no_mask_embed.reshape(1, -1, 1, 1).expand_as(embeddings)

    def text_masks(self, embeddings: Tensor, texts: list[Tensor]) -> Tensor:
        """Mask logits from E [B, C, g, g] and each sample's text states [n_i, D] (TP, mean, cross-attention)."""
        prompts = torch.stack([self.tp(h).mean(0) for h in texts])
        return self._decode(embeddings, prompts[:, None, None, :], self._no_mask(embeddings))

    def visual_masks(
        self,
        embeddings: Tensor,
        states: list[Tensor],
        grids: list[tuple[int, int]],
        valid: list[tuple[int, int]],
    ) -> Tensor:
        """Mask logits from E and noised VAE states [h*w, D] on ``grids``: VP, resized onto the part of E's
        grid that the image covers (``valid``, in E cells; the padding gets nothing), added to E."""
        g = embeddings.shape[-2:]
        maps = []
        for h, grid, (vh, vw) in zip(states, grids, valid, strict=True):
            x = resize_tokens(self.vp(h), grid, (vh, vw)).reshape(vh, vw, -1).permute(2, 0, 1)
            maps.append(F.pad(x, (0, g[1] - vw, 0, g[0] - vh)))
        return self._decode(embeddings, None, torch.stack(maps) + self._no_mask(embeddings))
