"""Decoding constraints that always finish: bounded JSON schemas and a one-line regex.

A grammar alone does not make decoding terminate: a model (a random tiny one above all) may keep
writing inside a free-text string, add whitespace between JSON tokens or append digits to a number
until ``max_new_tokens`` cuts the answer off. So every free-text string gets a pattern with a
bounded repetition, whitespace between tokens is switched off (see ``transformers_backend``; vLLM
takes ``disable_any_whitespace``) and numbers keep their ``minimum``/``maximum`` (xgrammar then
bounds their digits). The result is a finite language: decoding ends in a bounded number of tokens.

Length is bounded with ``pattern`` rather than ``maxLength`` because xgrammar ignores length
bounds next to a pattern, and the pattern also keeps strings from starting with whitespace (which
would be empty once stripped) and free of quotes, backslashes and control characters, so what is
generated is always valid JSON without escapes.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

# Characters Python's str.strip() removes (plus the C0/C1 control ranges): a string may not start
# with one, so it never strips to empty.
_LEADING_EXCLUDED = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Inside a JSON string: no quote, no backslash (no escapes needed), no control characters.
_JSON_BODY_EXCLUDED = r"\x00-\x1f\x7f"
# On one line: no control characters and none of the separators str.splitlines() breaks on.
_LINE_BODY_EXCLUDED = r"\x00-\x1f\x7f-\x9f\u2028\u2029"


def json_string_pattern(max_chars: int) -> str:
    """Regex for a JSON string value of 1..``max_chars`` characters, not starting with whitespace."""
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    return f'^[^"\\\\{_LEADING_EXCLUDED}][^"\\\\{_JSON_BODY_EXCLUDED}]{{0,{max_chars - 1}}}$'


def json_string_around_pattern(max_chars: int, literal: str) -> str:
    """Regex for a JSON string that contains ``literal`` once (a box written into a reasoning step),
    with up to ``max_chars`` characters of text on either side, none of them parentheses, so the
    literal is the only bracketed thing in it. The text may not start with whitespace."""
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    body = f'[^"\\\\(){_JSON_BODY_EXCLUDED}]'
    first = f'[^"\\\\(){_LEADING_EXCLUDED}]'
    escaped = "".join("\\" + c if c in "()[]{}.*+?^$|\\" else c for c in literal)
    return f"^({first}{body}{{0,{max_chars - 1}}})?{escaped}{body}{{0,{max_chars}}}$"


def single_line_regex(max_chars: int) -> str:
    """Regex for one line of 1..``max_chars`` characters that does not start with whitespace."""
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    return f"[^{_LEADING_EXCLUDED}][^{_LINE_BODY_EXCLUDED}]{{0,{max_chars - 1}}}"


def bounded_json_schema(model: type[BaseModel], max_string_chars: int) -> dict[str, Any]:
    """The JSON schema of ``model`` (by alias, ``$ref`` inlined, no titles or descriptions) with
    every free string bounded.

    Strings with ``enum``/``const`` are already finite and left alone; other strings get
    :func:`json_string_pattern` in place of their length bounds.
    """
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _bound(_inline(schema, defs), max_string_chars)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    # Inlined schemas are simpler for every grammar backend and keep property order visible.
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return _inline(copy.deepcopy(target), defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _bound(node: Any, max_chars: int) -> Any:
    """Bound one schema node; ``properties`` maps names to schemas, so their keys are kept as-is."""
    if isinstance(node, list):
        return [_bound(v, max_chars) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _bound(v, max_chars) for k, v in node.items() if k not in ("properties", "title", "description")
    }
    if "properties" in node:
        out["properties"] = {name: _bound(sub, max_chars) for name, sub in node["properties"].items()}
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out.pop("minLength", None)
        out.pop("maxLength", None)
        out["pattern"] = json_string_pattern(max_chars)
    return out
