"""API keys: random, shown once, stored as an HMAC so a leaked table does not leak keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

from .errors import shorten
from .models import ApiKey, utcnow
from .ports import JobStore

KEY_PREFIX = "tg_"
# Tenant names go into shared-state keys, logs, metrics labels and URLs: a safe alphabet keeps
# every one of those unambiguous (no ':', '{', '/', spaces, case twins).
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def validate_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name, else ValueError. Used wherever a tenant is made."""
    if not isinstance(name, str) or TENANT_PATTERN.fullmatch(name) is None:
        raise ValueError(f"invalid tenant name {shorten(name)}: use 1-63 characters of a-z, "
                         "0-9, '_', '.' and '-', starting with a letter or digit")
    return name


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_key(store: JobStore, *, tenant: str, secret: str) -> tuple[str, ApiKey]:
    """Create a key for ``tenant``; the plain key is returned once and never stored."""
    tenant = validate_tenant(tenant.strip())
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=uuid.uuid4().hex, tenant=tenant, prefix=plain[:10], created_at=utcnow())
    store.add_key(record, hash_key(plain, secret))
    return plain, record


def authenticate(store: JobStore, key: str, secret: str) -> str | None:
    """The tenant owning ``key``, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return store.tenant_for_key(hash_key(key, secret))
