"""Webhook signatures: what Tidegate sends and how a receiver checks it (stdlib only).

Every delivery is a POST with a JSON body (the event, as on the event stream) and headers::

    Tidegate-Signature: t=<unix seconds>,v1=<hex>     (hex = HMAC-SHA256(secret, f"{t}." + body))
    Tidegate-Delivery:  <delivery id>                  (the same on every retry: deduplicate on it)
    Tidegate-Event:     <event kind>

Right after a secret is rotated, a signature carries one ``v1=`` per secret still valid
(the new one first), so a receiver that still has the old secret keeps verifying.

Receiver side::

    from tidegate.webhooks import verify, InvalidSignature
    verify(secret, request.headers, raw_body)   # raises InvalidSignature
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping

SIGNATURE_HEADER = "Tidegate-Signature"
DELIVERY_HEADER = "Tidegate-Delivery"
EVENT_HEADER = "Tidegate-Event"
SECRET_PREFIX = "whsec_"

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "InvalidSignature", "SIGNATURE_HEADER",
           "new_secret", "sign", "signature", "verify"]


class InvalidSignature(Exception):  # noqa: N818 - the name receivers expect
    """The delivery is not signed with this secret, or its timestamp is outside tolerance."""


def new_secret() -> str:
    return SECRET_PREFIX + _secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` + ``body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | Iterable[str], body: bytes, timestamp: int | None = None,
         ) -> dict[str, str]:
    """The ``Tidegate-Signature`` header for ``body``: ``{"Tidegate-Signature": "t=..,v1=.."}``.
    Several secrets (during a rotation) give several ``v1=`` values."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    keys = [secret] if isinstance(secret, str) else list(secret)
    parts = [f"t={t}"] + [f"v1={signature(k, body, t)}" for k in keys]
    return {SIGNATURE_HEADER: ",".join(parts)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other casing
        lowered = name.lower()
        for key, v in headers.items():
            if key.lower() == lowered:
                return v
    return value


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300,
           now: float | None = None) -> None:
    """Raise :class:`InvalidSignature` unless ``body`` was signed with ``secret`` less than
    ``tolerance_s`` from ``now`` (replays of an old delivery are refused). ``body`` is the raw
    request body, exactly as received."""
    value = _header(headers, SIGNATURE_HEADER)
    if not value:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, v = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(v)
            except ValueError:
                raise InvalidSignature("the timestamp is not a number") from None
        elif key == "v1":
            candidates.append(v)
    if timestamp is None or not candidates:
        raise InvalidSignature("the signature header has no t= or no v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature("the timestamp is outside the tolerance (a replay?)")
    expected = signature(secret, body, timestamp)
    # Compare with every candidate, each in constant time.
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("no signature matches this secret")
