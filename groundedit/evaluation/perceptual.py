"""LPIPS and CLIP score, computed only from weights the user has on disk (nothing is downloaded).

**LPIPS** (Zhang et al. 2018, v0.1): distance between deep features of two images — a backbone's
activations at several layers, unit-normalised over channels, squared differences weighted by the
learned 1x1 "linear" layers, averaged over space, summed over layers. The backbones are written
here (AlexNet and SqueezeNet 1.1, the ``alex`` and ``squeeze`` variants; SmartEdit's evaluation uses
``squeeze``) because the ``lpips`` package and torchmetrics build them through torchvision, which
this project does not install. They load torchvision's checkpoint files (``alexnet-owt-7be5be79.pth``,
``squeezenet1_1-b8a52dc0.pth``: only ``features.*`` is used) and the lpips package's linear weights
(``weights/v0.1/alex.pth`` / ``squeeze.pth``), strictly, with ``weights_only=True``.

**CLIP score** (as torchmetrics defines it): ``100 * max(cos(image embedding, text embedding), 0)``
from a local CLIP folder (``CLIPModel`` + its tokenizer). Images are preprocessed here — shortest
side to the model's size (bicubic), centre crop, CLIP's mean/std — because transformers' default CLIP
image processor needs torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

LPIPS_NETS = ("squeeze", "alex")
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


def _backbone(net: str) -> tuple[nn.Sequential, list[int], list[int]]:
    """torchvision's ``features`` layers, the indices after which LPIPS taps them, their widths."""
    if net == "alex":
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        ]  # fmt: skip
        return nn.Sequential(*layers), [1, 4, 7, 9, 11], [64, 192, 384, 256, 256]
    if net == "squeeze":
        layers = [
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192),
            _Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256),
        ]  # fmt: skip
        return nn.Sequential(*layers), [1, 4, 7, 9, 10, 11, 12], [64, 128, 256, 384, 384, 512, 512]
    raise ValueError(f"unknown LPIPS network '{net}' (choose from: {', '.join(LPIPS_NETS)})")


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; ``forward`` takes two (N, 3, H, W) batches in [-1, 1]."""

    def __init__(self, net: str = "squeeze"):
        super().__init__()
        self.features, self.taps, widths = _backbone(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in widths)
        self.register_buffer("shift", torch.tensor(_SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(_SCALE)[None, :, None, None])

    @classmethod
    def from_files(cls, net: str, backbone: Path, linear: Path) -> LPIPS:
        """Load torchvision's backbone checkpoint and lpips' linear weights (strict key match)."""
        model = cls(net)
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        model.features.load_state_dict(state, strict=True)
        lin = torch.load(linear, map_location="cpu", weights_only=True)
        lins = {}
        for k, v in lin.items():  # "lin3.model.1.weight" (lpips, with dropout) or "lin3.model.0.weight"
            name, *_ = k.split(".")
            if name.startswith("lin") and k.endswith(".weight"):
                lins[f"{name[3:]}.weight"] = v
        model.lins.load_state_dict(lins, strict=True)
        return model.eval()

    def _taps(self, x):
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == self.taps[-1]:
                break
        return out

    @torch.no_grad()
    def forward(self, a, b):
        fa, fb = self._taps((a - self.shift) / self.scale), self._taps((b - self.shift) / self.scale)
        total = 0.0
        for lin, x, y in zip(self.lins, fa, fb, strict=True):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((x - y) ** 2).mean((2, 3))
        return total.flatten()

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """LPIPS of two (H, W, 3) float images in [0, 1]."""

        def t(x):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1

        return float(self(t(a), t(b))[0])


class CLIPScorer:
    """CLIP score of an image against a caption, from a local ``CLIPModel`` folder."""

    def __init__(self, folder: Path):
        from transformers import AutoTokenizer, CLIPModel

        self.model = CLIPModel.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        cfg = self._preprocess_config(folder)
        self.size = int(cfg.get("crop_size", {}).get("height", self.model.config.vision_config.image_size))
        self.mean = np.array(cfg.get("image_mean", CLIP_MEAN), np.float32)
        self.std = np.array(cfg.get("image_std", CLIP_STD), np.float32)
        self.max_tokens = self.model.config.text_config.max_position_embeddings

    @staticmethod
    def _preprocess_config(folder: Path) -> dict:
        path = Path(folder) / "preprocessor_config.json"
        cfg = json.loads(path.read_text()) if path.is_file() else {}
        if isinstance(cfg.get("crop_size"), int):
            cfg["crop_size"] = {"height": cfg["crop_size"]}
        return cfg

    def pixels(self, rgb: np.ndarray):
        im = Image.fromarray(rgb)
        scale = self.size / min(im.size)
        im = im.resize(
            (max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
        im = im.crop((left, top, left + self.size, top + self.size))
        x = (np.asarray(im, np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x).permute(2, 0, 1)[None]

    @torch.no_grad()
    def score(self, rgb: np.ndarray, text: str) -> float:
        tokens = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=self.max_tokens)
        img = self.model.get_image_features(pixel_values=self.pixels(rgb))
        txt = self.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
        img, txt = _embedding(img), _embedding(txt)
        cos = torch.nn.functional.cosine_similarity(img, txt).item()
        return 100.0 * max(cos, 0.0)


def _embedding(out):
    """``get_*_features`` returns a tensor, or (transformers 5) an output whose pooler holds it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output
