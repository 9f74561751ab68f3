"""The tiny perception profile: random-weight RAM++, Grounding DINO and SAM written in official formats.

Everything is generated from a seed, written to a cache directory (atomically: a temp directory
renamed into place) and then loaded by the very loaders the real checkpoints use:

- ``ram_plus/``: ``ram_plus_tiny.pth`` holding ``{"model": state_dict}`` under the official key names,
  ``ram_tag_list.txt``, ``ram_tag_list_threshold.txt``, ``ram_tag_list_chinese.txt`` and
  ``ram_plus_config.json`` (the official release has no config file; its sizes are read from the
  checkpoint's shapes).
- ``grounding_dino/`` and ``sam/``: ``save_pretrained`` directories with processor configs; Grounding
  DINO's tokenizer is a BERT WordPiece vocabulary built here.

Random weights give scores that say nothing about the image, so the tiny thresholds are chosen to
make both outcomes happen on any image: see ``TINY_RAM_THRESHOLD_CYCLE`` and ``TINY_GROUNDING``.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import torch

from groundedit.models.perception import architectures
from groundedit.models.perception.ram_vocab import CHINESE_FILE, TAGS_FILE, THRESHOLDS_FILE
from groundedit.models.perception.tagger import RAM_CONFIG_FILE

TINY_TAGS: tuple[str, ...] = (
    "person",
    "dog",
    "car",
    "traffic light",
    "tree",
    "building",
    "sky",
    "bench",
    "umbrella",
    "bicycle",
    "teddy bear",
    "grass",
)
# Their names in RAM++'s Chinese list ("teddy bear" is not in RAM++'s vocabulary).
TINY_TAGS_CHINESE: tuple[str, ...] = (
    "人",
    "狗",
    "车",
    "红绿灯",
    "树",
    "建筑",
    "天空",
    "长凳",
    "伞",
    "自行车",
    "泰迪熊",
    "草",
)
# Per-class thresholds, cycled over the tags: 0.0 always passes (downstream stages always get tags),
# 1.0 never does (the drop path always runs), 0.5 depends on the image.
TINY_RAM_THRESHOLD_CYCLE = (0.0, 0.5, 1.0)
# Grounder settings for tiny models. Random Grounding DINO gives most of its 40 queries a box score
# above 0.9 and spreads per-tag token scores around 0.1-0.6, so box 0.9 / text 0.5 keep some boxes and
# drop others (the paper's 0.25 / 0.2 would keep nearly all). SAM's randomly initialised IoU head
# predicts values within ~1e-3 of zero on either side, so the mask-score cut sits at zero.
# ``max_objects`` bounds SAM work per image, as a real run would.
TINY_GROUNDING = {
    "box_threshold": 0.9,
    "text_threshold": 0.5,
    "nms_iou": 0.5,
    "min_mask_score": 0.0,
    "max_objects": 10,
}

# Grounding DINO hard-codes bert-base-uncased ids for [CLS], [SEP], "." and "?" (its phrase delimiters).
_BERT_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
# Whole words of the tiny WordPiece vocabulary (anything else is spelled with ## pieces).
TINY_WORDS: tuple[str, ...] = (
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "with",
    "and",
    "or",
    "to",
    "is",
    "are",
    "this",
    "that",
    "image",
    "photo",
    "picture",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "small",
    "large",
    "left",
    "right",
    "front",
    "back",
    "top",
    "bottom",
    "person",
    "people",
    "man",
    "woman",
    "child",
    "dog",
    "cat",
    "car",
    "traffic",
    "light",
    "tree",
    "building",
    "sky",
    "bench",
    "umbrella",
    "bicycle",
    "teddy",
    "bear",
    "grass",
    "street",
    "road",
    "water",
)
_FILES_VERSION = 3  # 2: the Chinese tag list; 3: SAM image encoder initialised at std 0.02


def bert_vocab(size: int | None = None) -> dict[str, int]:
    """A WordPiece vocabulary laid out like bert-base-uncased where it matters, padded to ``size``.

    Ids 0-103 and the punctuation block from 999 sit where bert-base-uncased has them, so the four
    delimiter ids Grounding DINO hard-codes are right; ``##`` pieces for letters and digits let any
    lowercase ASCII word tokenize.
    """
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(99, 994)]
    tokens += [c for c in map(chr, range(33, 127)) if c not in string.ascii_uppercase]
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in dict.fromkeys(TINY_WORDS) if w not in tokens]
    if size is not None:
        if size < len(tokens):
            raise ValueError(f"vocabulary needs at least {len(tokens)} entries")
        tokens += [f"[unused{i}]" for i in range(994, 994 + size - len(tokens))]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert all(vocab[t] == i for t, i in _BERT_IDS.items())
    return vocab


def build_ram_plus(size: architectures.Size, num_tags: int, seed: int):
    """A random-weight RAM++; description embeddings are unit vectors like the official CLIP ones."""
    from groundedit.models.perception.ram_plus import RamPlus

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RamPlus(architectures.ram_plus_config(size, num_tags))
        with torch.no_grad():
            model.label_embed.normal_()
            model.label_embed.div_(model.label_embed.norm(dim=-1, keepdim=True))
    return model


def build_grounding_dino(size: architectures.Size, vocab_size: int, seed: int):
    """A random-weight ``GroundingDinoForObjectDetection``."""
    from transformers import GroundingDinoForObjectDetection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GroundingDinoForObjectDetection(architectures.grounding_dino_config(size, vocab_size)).eval()


def build_sam(size: architectures.Size, seed: int):
    """A random-weight ``SamModel``."""
    from transformers import SamModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SamModel(architectures.sam_config(size)).eval()


def tiny_paths(cache_dir: str | Path) -> dict[str, Path]:
    """Where :func:`write_tiny_perception` puts each file."""
    root = Path(cache_dir)
    ram = root / "ram_plus"
    return {
        "ram_checkpoint": ram / "ram_plus_tiny.pth",
        "ram_tags": ram / TAGS_FILE,
        "ram_thresholds": ram / THRESHOLDS_FILE,
        "ram_chinese": ram / CHINESE_FILE,
        "ram_config": ram / RAM_CONFIG_FILE,
        "grounding_dino": root / "grounding_dino",
        "sam": root / "sam",
    }


def write_tiny_perception(cache_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write (or reuse, if already written for this seed) the tiny models; returns :func:`tiny_paths`."""
    root = Path(cache_dir)
    marker = {"seed": seed, "version": _FILES_VERSION}
    done = root / "tiny_perception.json"
    if done.is_file() and json.loads(done.read_text()) == marker:
        return tiny_paths(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-perception-", dir=root.parent))
    try:
        paths = tiny_paths(tmp)
        write_tiny_ram_plus(paths["ram_checkpoint"].parent, seed)
        write_tiny_grounding_dino(paths["grounding_dino"], seed + 1)
        write_tiny_sam(paths["sam"], seed + 2)
        (tmp / done.name).write_text(json.dumps(marker))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tiny_paths(root)


def write_tiny_ram_plus(dest: str | Path, seed: int = 0) -> Path:
    """Tiny RAM++ checkpoint with its vocabulary (tags, thresholds, Chinese names) and config beside it;
    returns the ``.pth``.

    Also the ``tiny://ram_plus`` builder of :mod:`groundedit.models.hub` (``builder(dest) -> path``).
    """
    from groundedit.models.perception.ram_plus_adapter import ours_to_official

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ram = build_ram_plus("tiny", len(TINY_TAGS), seed)
    checkpoint = dest / "ram_plus_tiny.pth"
    torch.save({"model": ours_to_official(ram)}, checkpoint)
    (dest / TAGS_FILE).write_text("\n".join(TINY_TAGS) + "\n", encoding="utf-8")
    (dest / CHINESE_FILE).write_text("\n".join(TINY_TAGS_CHINESE) + "\n", encoding="utf-8")
    cycle = TINY_RAM_THRESHOLD_CYCLE
    (dest / THRESHOLDS_FILE).write_text("".join(f"{cycle[i % len(cycle)]}\n" for i in range(len(TINY_TAGS))))
    ram.config.to_json(dest / RAM_CONFIG_FILE)
    return checkpoint


def write_tiny_grounding_dino(dest: str | Path, seed: int = 1) -> Path:
    """Tiny Grounding DINO ``save_pretrained`` directory with tokenizer and processor; returns ``dest``.

    Also the ``tiny://grounding_dino`` builder of :mod:`groundedit.models.hub`.
    """
    from transformers import BertTokenizer, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    vocab = bert_vocab()
    build_grounding_dino("tiny", len(vocab), seed).save_pretrained(dest)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size=dict(architectures.TINY_DINO_SIZE)),
        tokenizer=BertTokenizer(vocab=vocab),
    ).save_pretrained(dest)
    return Path(dest)


def write_tiny_sam(dest: str | Path, seed: int = 2) -> Path:
    """Tiny SAM ``save_pretrained`` directory with its processor; returns ``dest``.

    Also the ``tiny://sam`` builder of :mod:`groundedit.models.hub`.
    """
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    side = architectures.TINY_SAM_SIZE
    build_sam("tiny", seed).save_pretrained(dest)
    processor = SamImageProcessorPil(size={"longest_edge": side}, pad_size={"height": side, "width": side})
    SamProcessor(image_processor=processor).save_pretrained(dest)
    return Path(dest)
