"""Keyed randomness: every random choice derives from the run seed and a string key (the sample key,
prefixed by what is being drawn), never from order, batch composition or executor."""

from __future__ import annotations

import hashlib


def draw_seed(seed: int, key: str) -> int:
    """A 64-bit seed from the run seed and ``key`` (a stable hash)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


def sampling_seed(seed: int, key: str) -> int:
    """The same, cut to 31 bits for libraries that want a non-negative int32 seed."""
    return draw_seed(seed, key) & 0x7FFFFFFF
