"""List cursors: opaque to clients, tamper-evident, decoded into a position the store trusts.

A cursor is base64url(payload || HMAC-SHA256(key, payload)) with payload the JSON
``[created_at, job_id]`` of the last job on the page. The key is derived from the install's
secret, so a cursor cannot be forged or edited; even a correctly signed one is checked
before it reaches a database (an aware datetime in range, a plausible id).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime

from .errors import InvalidCursor
from .jsonsafe import text_problem

Position = tuple[datetime, str]

_SIG = 32
MAX_CURSOR_CHARS = 400
MAX_ID_CHARS = 64


def cursor_key(secret: str) -> bytes:
    """The signing key: derived, so it is not the key that hashes API keys."""
    return hmac.new(secret.encode(), b"tidegate list cursor v1", hashlib.sha256).digest()


def sign(payload: bytes, key: bytes) -> str:
    raw = payload + hmac.new(key, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode_cursor(position: Position, key: bytes) -> str:
    at, job_id = position
    return sign(json.dumps([at.astimezone(UTC).isoformat(), job_id],
                           separators=(",", ":")).encode(), key)


def decode_cursor(cursor: str, key: bytes) -> Position:
    """The position inside ``cursor``; InvalidCursor if it was not issued by us as it is."""
    bad = InvalidCursor("invalid cursor: pass back `next_cursor` exactly as it was returned")
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    payload, sig = raw[:-_SIG], raw[-_SIG:]
    if len(raw) <= _SIG or not hmac.compare_digest(
            sig, hmac.new(key, payload, hashlib.sha256).digest()):
        raise bad
    try:
        at_text, job_id = json.loads(payload)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime")
        at = at.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, TypeError, OverflowError):
        raise bad from None
    if (not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_ID_CHARS
            or text_problem(job_id)):
        raise bad
    return at, job_id
