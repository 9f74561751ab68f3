"""Sample keys: one per input file, readable, and never the key of another file.

The rule: a photo's key is its path relative to the input without a trailing ``.jpg`` (an SA-1B
image's: its file name without extension) when that text is already a *plain* key; any other text
is made plain and gets ``~`` and a hash of the file's path (an SA-1B image's: of its name). A plain
key is NFC, case-folded, made of letters, marks and digits of any script plus ``_`` and ``-``, and at
most :data:`MAX_KEY_BYTES` bytes of UTF-8.

Why it is injective: a plain key equals the text it came from, and only one path (or one SA-1B image
name) has that text; every other key holds ``~``, which no plain key does, and a hash of the file's
own path. So a key depends on its file alone, never on which other files exist (adding a file
renames nothing), and two keys never differ only by case or Unicode normalisation (macOS file
systems would merge them). The one overlap left is meant: an SA-1B name seen twice (or a photo at
the input's top named like an SA-1B image elsewhere) is the same image, which the scan rejects as
``duplicate_key``. Keys hold no dot (WebDataset splits a member name at its first dot), no ``/`` and
no character a common file system refuses, and leave room for a member suffix under the 255-byte
file name limit.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import unicodedata

MAX_KEY_BYTES = 200  # "<key>.grounded.jpg" and the like stay under 255 bytes
HASH_CHARS = 10  # 40 bits: the hash only tells apart paths whose readable part is the same
HASH_MARK = "~"
_ASCII_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def _plain_char(c: str) -> bool:
    return c in "_-" or unicodedata.category(c)[0] in "LMN"


def plain(text: str) -> str:
    """``text`` made a plain key: NFC, case-folded, every run of other characters replaced by ``_``
    (not shortened)."""
    if text.isascii():
        return _ASCII_UNSAFE.sub("_", text.lower())
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    out: list[str] = []
    in_run = False  # one "_" per run of other characters, as in the ASCII pattern
    for c in folded:
        ok = _plain_char(c)
        if ok or not in_run:
            out.append(c if ok else "_")
        in_run = not ok
    return "".join(out)


def path_hash(identity: str) -> str:
    """The first :data:`HASH_CHARS` hex digits of the sha256 of ``identity`` as the file system
    spells it (undecodable bytes included)."""
    return hashlib.sha256(os.fsencode(identity)).hexdigest()[:HASH_CHARS]


def sample_key(text: str, identity: str) -> str:
    """The key of the file described by ``text`` (what the key should read as) and ``identity``
    (its path relative to the input, which the hash is of)."""
    if text and plain(text) == text and len(text.encode()) <= MAX_KEY_BYTES:
        return text
    budget = MAX_KEY_BYTES - len(HASH_MARK) - HASH_CHARS
    # Keep the end of a long name: the file's own name is there, folders come first.
    readable = plain(text).encode()[-budget:].decode(errors="ignore")
    return f"{readable}{HASH_MARK}{path_hash(identity)}"


def photo_key(text: str, relative: str) -> str:
    """The key of an image that is not an SA-1B image: ``text`` is its path relative to the input as
    it should read (a tar's members as if the tar were a folder), ``relative`` the exact path
    (``<tar>/<member>`` for a member). The ``.jpg`` of the common case is left out of the key."""
    return sample_key(text.removesuffix(".jpg"), relative)


def sa1b_key(stem: str) -> str:
    """The key of an SA-1B image (one with its annotation beside it): its file name without extension.
    SA-1B names are unique across the dataset, so the same name twice is the same image."""
    name = posixpath.basename(stem)
    return sample_key(name, name)
