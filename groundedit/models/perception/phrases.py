"""Tags <-> Grounding DINO text prompts: chunking under the token limit, token offsets back to tags.

A prompt is the tags joined as ``"cat. traffic light. dog."``: Grounding DINO treats ``.`` as a
phrase delimiter (its text self-attention does not cross it), which is the format its authors and the
transformers processor use. Each prompt remembers the character span of every tag, so a token's
offset says which tag it belongs to: no decoding of token strings back into words is needed, and
multi-word or repeated-word tags stay distinct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Characters that Grounding DINO treats as phrase delimiters; inside a tag they would split it.
_DELIMITERS = str.maketrans({".": " ", "?": " "})


@dataclass(frozen=True)
class TagPrompt:
    """One text prompt: its text, the tags in it, and each tag's [start, end) character span."""

    text: str
    tags: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


def clean_tag(tag: str) -> str:
    """The tag as written into a prompt: lower case, delimiters replaced, whitespace collapsed."""
    return " ".join(tag.lower().translate(_DELIMITERS).split())


def build_prompt(tags: Sequence[str]) -> TagPrompt:
    """Join tags into one prompt, recording where each one sits."""
    parts, spans, pos = [], [], 0
    for tag in tags:
        text = clean_tag(tag)
        spans.append((pos, pos + len(text)))
        parts.append(text + ".")
        pos += len(text) + 2  # the "." and the joining space
    return TagPrompt(text=" ".join(parts), tags=tuple(tags), spans=tuple(spans))


def chunk_tags(
    tags: Sequence[str], count_tokens: Callable[[str], int], max_tokens: int
) -> tuple[list[TagPrompt], list[str]]:
    """Greedily pack tags, in order, into prompts of at most ``max_tokens`` tokens.

    ``count_tokens(text)`` counts a tag's tokens without special tokens; a prompt costs 2 (``[CLS]``,
    ``[SEP]``) plus, per tag, its tokens and one ``.``. BERT's pre-tokenizer splits at whitespace and
    punctuation, so these counts add up exactly. Duplicate tags are kept once. Returns the prompts and
    the tags too long to fit in any prompt.
    """
    prompts, too_long, current, used = [], [], [], 2
    for tag in dict.fromkeys(tags):
        if not clean_tag(tag):
            continue
        cost = count_tokens(clean_tag(tag)) + 1
        if 2 + cost > max_tokens:
            too_long.append(tag)
            continue
        if used + cost > max_tokens:
            prompts.append(build_prompt(current))
            current, used = [], 2
        current.append(tag)
        used += cost
    if current:
        prompts.append(build_prompt(current))
    return prompts, too_long


def token_tags(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """For each token, the index of the tag whose span contains it, or -1 (special tokens, ``.``, padding)."""
    owner = np.full(len(offsets), -1, dtype=np.int64)
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        for j, (s, e) in enumerate(spans):
            if s <= start and end <= e:
                owner[t] = j
                break
    return owner


def tag_scores(token_probs: np.ndarray, owner: np.ndarray, num_tags: int) -> np.ndarray:
    """Per box and tag, the highest probability over that tag's tokens: (boxes, tokens) -> (boxes, tags)."""
    token_probs = np.asarray(token_probs)
    scores = np.zeros((token_probs.shape[0], num_tags), dtype=np.float64)
    for j in range(num_tags):
        cols = np.flatnonzero(owner[: token_probs.shape[1]] == j)
        if cols.size:
            scores[:, j] = token_probs[:, cols].max(axis=1)
    return scores


def assign_tags(scores: np.ndarray, text_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each box's tag (index, or -1 if none has a token above ``text_threshold``) and its text score.

    Grounding DINO's own post-processing keeps every token above the text threshold and decodes them
    into one phrase, which can merge two tags; we take the tag whose best token scores highest.
    """
    if scores.shape[1] == 0:
        return np.full(scores.shape[0], -1, dtype=np.int64), np.zeros(scores.shape[0])
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(scores.shape[0]), best]
    return np.where(best_score > text_threshold, best, -1), best_score
