"""Webhook endpoint secrets at rest: encrypted (Fernet) with a key derived from
TIDEGATE_SECRET_KEY.

A secret must stay readable, since every delivery is signed with it; encrypting it means a
copy of the database alone does not let anyone forge deliveries. Changing TIDEGATE_SECRET_KEY
makes stored secrets unreadable: rotate each endpoint's secret afterwards.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"tidegate webhook secrets\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The plain secret, or None when it was sealed under another TIDEGATE_SECRET_KEY."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, ValueError):
            return None
