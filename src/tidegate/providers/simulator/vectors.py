"""Deterministic embedding vectors: feature-hashed words plus a little per-text noise.

Texts that share words get a higher cosine similarity than unrelated ones, which makes
simulated retrieval behave sensibly, while identical texts always map to identical vectors.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

_WORD = re.compile(r"\w+")


def _h(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "big")


def embed_text(text: str, model: str, dims: int) -> list[float]:
    vec = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        h = _h(model, word)
        for j in range(3):  # three signed slots per word: fewer collisions than one
            slot = (h >> (j * 16)) % dims
            vec[slot] += 1.0 if (h >> (48 + j)) & 1 else -1.0
    noise = _h(model, "noise", text)
    for j in range(dims):  # keeps empty or stopword-only texts from being the zero vector
        vec[j] += (((noise >> (j % 61)) & 7) - 3.5) * 0.02
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


def to_base64(vec: list[float]) -> str:
    """OpenAI's ``encoding_format="base64"``: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
