"""LaMa inpainting from the official TorchScript export (``big-lama.pt``).

The file is the TorchScript export IOPaint (lama-cleaner) publishes as a release asset of
github.com/Sanster/models (``add_big_lama/big-lama.pt``, ~196 MiB; the exact download command is
``groundedit.models.hub.how_to_get``, shown by the preflight and ``groundedit doctor``). The export
takes ``(image, mask)`` — image ``(N,3,H,W)`` in [0,1], mask ``(N,1,H,W)`` in {0,1} — and returns the
inpainted image. Its convolutions downsample by 8, so inputs are padded (reflect) to a
multiple of 8 and cropped back; the result is composited so pixels outside the mask are the input's,
whatever the network does there.

The tiny profile uses :func:`write_tiny_lama`: a small scripted module with the same call signature,
saved and loaded through the same :func:`torch.jit.load` path as the real file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

PAD_MULTIPLE = 8


def _pad_to(x, multiple: int):
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class LamaInpainter:
    """Inpaint masked regions of RGB images with a TorchScript LaMa."""

    def __init__(self, module, device):
        self.module = module
        self.device = device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> LamaInpainter:
        import torch

        path = Path(path)
        if not path.is_file():
            from groundedit.models.hub import how_to_get

            raise FileNotFoundError(
                f"LaMa TorchScript {path} not found: get it with `{how_to_get(str(path))}` (the "
                "TorchScript export of big-lama that IOPaint publishes), or point stages/edit.yaml "
                "models.inpainter at your copy"
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the official format
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device).eval()
        return cls(module, device)

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``rgb`` (H,W,3) uint8, ``mask`` (H,W) bool → inpainted (H,W,3) uint8, equal to ``rgb``
        wherever ``mask`` is False."""
        import torch

        h, w = mask.shape
        image = (
            torch.from_numpy(np.array(rgb, copy=True)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        )
        m = torch.from_numpy(mask.astype(np.float32)).to(self.device)[None, None]
        with torch.inference_mode():
            out = self.module(_pad_to(image, PAD_MULTIPLE), _pad_to(m, PAD_MULTIPLE))[..., :h, :w]
            out = out.clamp(0, 1) * m + image * (1 - m)
        result = (out[0].permute(1, 2, 0) * 255.0 + 0.5).clamp(0, 255).byte().cpu().numpy()
        result[~mask] = rgb[~mask]  # exact, not just up to float rounding
        return result


def write_tiny_lama(out_path: str | Path, seed: int = 0) -> Path:
    """Save a tiny scripted inpainter with big-lama's call signature (for the tiny profile)."""
    import torch
    from torch import nn

    class TinyLama(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
            self.mid = nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose2d(8, 8, 4, stride=4)
            self.out = nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = torch.cat([image * (1 - mask), mask], dim=1)
            x = torch.relu(self.down(x))
            x = torch.relu(self.mid(x))
            x = self.up(x)
            pred = torch.sigmoid(self.out(x))
            return mask * pred + (1 - mask) * image

    torch.manual_seed(seed)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(TinyLama().eval()), str(tmp))
    tmp.replace(out_path)
    return out_path


def build_tiny_lama(dest: Path) -> Path:
    """Tiny-profile builder (``tiny://lama``): the scripted stand-in in ``dest``."""
    return write_tiny_lama(Path(dest) / "big-lama.pt")
