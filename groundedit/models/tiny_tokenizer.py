"""A small byte-level BPE tokenizer with the Qwen2 special tokens, built locally.

The tiny profile's language models (tiny Qwen2.5-VL, tiny Qwen3, tiny Bagel) need a real tokenizer
that round-trips any text, knows the chat and vision special tokens and loads through
``transformers.AutoTokenizer`` exactly like a downloaded one. Nothing here touches the network: the
BPE merges are learned from a fixed in-code corpus, so the same files come out on every machine.

The folder is a Qwen2 tokenizer folder in full: ``tokenizer.json`` for the fast loaders, and
``vocab.json`` + ``merges.txt`` (with the special tokens in ``tokenizer_config.json``'s
``added_tokens_decoder``) for loaders that build the tokenizer from those, such as official Bagel's
``Qwen2Tokenizer.from_pretrained``. Both give the same ids because ``tokenizer.json`` uses Qwen2's own
pre-tokenizer (its split pattern — digits one by one — then byte-level) and NFC normalizer, which is what
a ``Qwen2Tokenizer`` builds around a vocabulary and merges.
"""

from __future__ import annotations

import json
from pathlib import Path

from groundedit.records import COT_KEYS

# Qwen2 / Qwen2.5-VL / Qwen3 special tokens, in the order the official vocabularies list them.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
)

# A ChatML template in the Qwen style: system/user/assistant turns, images as a vision span.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# An instruction answer's empty CoT, its keys from the records (the line break keeps the corpus as it
# was first written).
_EMPTY_COT = f'{{"{COT_KEYS[0]}": "",\n' + ", ".join(f'"{k}": ""' for k in COT_KEYS[1:]) + "}"

# Text the merges are learned from: the vocabulary the pipeline's prompts and answers use, so that
# tiny models see short sequences. Order and content are fixed; changing them changes the tokenizer.
_CORPUS = f"""
The image shows a scene with several objects. Change the color of the car on the left to blue.
Remove the person standing behind the bench. Replace the red umbrella with a green one.
Add a small bird on the roof of the building. Make the dog in the middle look wet and muddy.
Scene description: a street with people, cars, trees, buildings, signs, windows and a sky.
Target localization: the second object from the right, next to the tall tree, below the window.
Editing description: recolor the jacket; keep everything else unchanged.
Post edit description: the jacket is now yellow while the rest of the picture stays the same.
{{"Editing_Type": "color change", "Editing_Instruction": "...", "CoT": {_EMPTY_COT}}}
{{"RegionEditAccuracy": 4.5, "SeamlessQuality": 3.0}} 0 1 2 3 4 5 6 7 8 9 10 100 1000
remove replace add appearance others color change object person people man woman child
left right top bottom center middle front behind above below near far first second third last
red green blue yellow black white gray brown orange purple pink large small tall short wooden metal
"""


# Qwen2's pre-tokenizer split pattern (its tokenizer.json and its Python tokenizer use this one).
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def build_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 1024) -> Path:
    """Write tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    # The merges are learned as they always were (so the tiny models' vocabularies stay as they are); the
    # saved tokenizer then splits text as Qwen2 does, which is also what a Qwen2Tokenizer builds around
    # vocab.json + merges.txt (merges across a Qwen2 split, e.g. between digits, simply never apply).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))  # vocab.json + merges.txt (the vocabulary holds the special tokens too)
    special_ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}

    config = {
        "tokenizer_class": "Qwen2TokenizerFast",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        "chat_template": CHAT_TEMPLATE,
        # what a loader that reads vocab.json + merges.txt needs to keep the special tokens whole
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
                "special": True,
            }
            for t, i in special_ids.items()
        },
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return out
