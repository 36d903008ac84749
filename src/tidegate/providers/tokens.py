"""A cheap, dependency-free token estimate shared by callers and the simulator.

Callers use it to charge a lane *before* a call (the limiter needs a number up front); the
simulator uses the very same function to count and to enforce its quotas, so an estimate made
by a caller matches what the simulator charges exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tidegate.core.llm import Message

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with BPE tokenizers


def estimate_tokens(text: str) -> int:
    """About one token per four characters; at least one for any non-empty text."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def estimate_messages_tokens(messages: Iterable[Message] | Iterable[str]) -> int:
    """Sum of :func:`estimate_tokens` over the messages' contents (no per-message overhead)."""
    total = 0
    for m in messages:
        total += estimate_tokens(m if isinstance(m, str) else m.content)
    return total
