"""API keys: random, shown once, stored as an HMAC so a leaked table does not leak keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from .models import ApiKey, utcnow
from .ports import JobStore

KEY_PREFIX = "tg_"


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_key(store: JobStore, *, tenant: str, secret: str) -> tuple[str, ApiKey]:
    """Create a key for ``tenant``; the plain key is returned once and never stored."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 100:
        raise ValueError("tenant must be 1-100 characters")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=uuid.uuid4().hex, tenant=tenant, prefix=plain[:10], created_at=utcnow())
    store.add_key(record, hash_key(plain, secret))
    return plain, record


def authenticate(store: JobStore, key: str, secret: str) -> str | None:
    """The tenant owning ``key``, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return store.tenant_for_key(hash_key(key, secret))
