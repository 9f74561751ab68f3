"""Prompt templates: one file per prompt under ``prompts/``, with a system and a user section.

File format (plain text)::

    # comment lines before the first section describe the prompt; they are not sent
    [system]
    ...system turn...
    [user]
    ...user turn, may contain {placeholders}...

A placeholder is a lower-case name in braces, e.g. ``{edit_type}``; JSON examples such as
``{"answer": 1}`` are left alone. Rendering demands exactly the template's placeholders, so a
renamed field fails loudly instead of sending a half-filled prompt. The SHA-256 of the whole file
is the prompt's identity in records and in the stage's invalidation hash.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_SECTION = re.compile(r"^\[(system|user)\][ \t]*$", re.MULTILINE)


class PromptError(ValueError):
    """A prompt file is malformed or rendered with the wrong fields."""


class PromptTemplate(BaseModel):
    """A parsed prompt file: its two turns and the hash of its text."""

    model_config = ConfigDict(frozen=True)

    name: str
    system: str
    user: str
    sha256: str

    @classmethod
    def from_text(cls, name: str, text: str) -> PromptTemplate:
        """Parse a prompt file's text (see the module docstring for the format)."""
        marks = list(_SECTION.finditer(text))
        if [m.group(1) for m in marks] != ["system", "user"]:
            raise PromptError(f"prompt {name!r}: needs a [system] then a [user] section, each once")
        system = text[marks[0].end() : marks[1].start()].strip("\n")
        user = text[marks[1].end() :].strip("\n")
        if not system.strip() or not user.strip():
            raise PromptError(f"prompt {name!r}: empty section")
        return cls(name=name, system=system, user=user, sha256=hashlib.sha256(text.encode()).hexdigest())

    @property
    def placeholders(self) -> frozenset[str]:
        """Names the template expects when rendered."""
        return frozenset(_PLACEHOLDER.findall(self.system) + _PLACEHOLDER.findall(self.user))

    def render(self, **fields: str) -> tuple[str, str]:
        """``(system, user)`` with every placeholder filled; values are inserted verbatim."""
        missing, extra = self.placeholders - fields.keys(), fields.keys() - self.placeholders
        if missing or extra:
            raise PromptError(
                f"prompt {self.name!r}: missing fields {sorted(missing)}, unexpected {sorted(extra)}"
            )

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]), text)

        return fill(self.system), fill(self.user)


def load_prompt(name: str, directory: str | Path | None = None) -> PromptTemplate:
    """Load ``<directory>/<name>.md`` (``name`` may also be a file name or a path).

    ``directory`` defaults to the project's prompts folder (``GROUNDEDIT_PROMPTS_DIR`` overrides it).
    """
    if directory is None:
        from groundedit.specs import prompts_dir

        directory = prompts_dir()
    path = Path(name)
    if not path.is_absolute():
        path = Path(directory) / (name if path.suffix else f"{name}.md")
    if not path.is_file():
        raise PromptError(f"prompt file {path} not found")
    return PromptTemplate.from_text(path.stem, path.read_text(encoding="utf-8"))
