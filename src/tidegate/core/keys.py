"""API keys: random, shown once, stored as an HMAC so a leaked table does not leak keys.

Each key carries a scope: ``admin`` (everything, every tenant), ``submit`` (submit, read,
cancel and retry its own tenant's jobs) or ``read`` (read its own tenant's jobs and streams).
A key may expire; rotating one makes a new key and lets the old one live for a grace period.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from .errors import InvalidInput, NotFound, shorten
from .models import ApiKey, utcnow
from .ports import AccountStore

KEY_PREFIX = "tg_"
PREFIX_LEN = 10  # what listings show and revoke/rotate accept: "tg_" + 7 characters
MAX_NAME = 100
DEFAULT_GRACE_S = 24 * 3600.0
# Tenant names go into shared-state keys, logs, metrics labels and URLs: a safe alphabet keeps
# every one of those unambiguous (no ':', '{', '/', spaces, case twins).
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Scope(StrEnum):
    ADMIN = "admin"
    SUBMIT = "submit"
    READ = "read"


_RANK = {Scope.READ: 0, Scope.SUBMIT: 1, Scope.ADMIN: 2}


def allows(have: str, need: Scope) -> bool:
    """Each scope includes the ones below it: admin > submit > read."""
    try:
        return _RANK[Scope(have)] >= _RANK[need]
    except ValueError:  # a scope no version wrote: nothing
        return False


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        raise InvalidInput(f"invalid scope {shorten(value)}; use admin, submit or read") from None


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise InvalidInput(f"invalid duration {shorten(text)}; use e.g. 30d, 12h, 90m")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def validate_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name, else ValueError. Used wherever a tenant is made."""
    if not isinstance(name, str) or TENANT_PATTERN.fullmatch(name) is None:
        raise ValueError(f"invalid tenant name {shorten(name)}: use 1-63 characters of a-z, "
                         "0-9, '_', '.' and '-', starting with a letter or digit")
    return name


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_key(store: AccountStore, *, tenant: str, secret: str, scope: str = Scope.SUBMIT,
               name: str = "", expires_at: datetime | None = None,
               rotated_from: str | None = None) -> tuple[str, ApiKey]:
    """Create a key for ``tenant``; the plain key is returned once and never stored."""
    tenant = validate_tenant(tenant.strip())
    scope = parse_scope(scope)
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a key name has at most {MAX_NAME} characters")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("the key would already be expired")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=uuid.uuid4().hex, tenant=tenant, prefix=plain[:PREFIX_LEN],
                    created_at=now, scope=scope.value, name=name, expires_at=expires_at,
                    rotated_from=rotated_from)
    store.add_key(record, hash_key(plain, secret))
    return plain, record


def lookup(store: AccountStore, key: str, secret: str) -> ApiKey | None:
    """The record of ``key`` (revoked and expired ones too), or None. No I/O for junk."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return store.key_for_hash(hash_key(key, secret))


def authenticate(store: AccountStore, key: str, secret: str) -> ApiKey | None:
    """The key's record if it is valid now (not revoked, not expired), else None."""
    record = lookup(store, key, secret)
    return record if record is not None and record.valid_at(utcnow()) else None


def find_key(store: AccountStore, ref: str) -> ApiKey:
    """One key by its prefix (as listed) or its id; ambiguous or unknown is an error."""
    ref = ref.strip().rstrip("…")
    by_id = store.get_key(ref) if len(ref) == 32 else None
    if by_id is not None:
        return by_id
    if len(ref) < 6:
        raise InvalidInput("give the key's prefix as `keys list` shows it (e.g. tg_AbC1234)")
    found = store.keys_by_prefix(ref)
    if not found:
        raise NotFound(f"no key with prefix {shorten(ref)}")
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} keys start with {shorten(ref)}; give the key id")
    return found[0]


def revoke(store: AccountStore, ref: str) -> ApiKey:
    key = find_key(store, ref)
    if not store.revoke_key(key.id, at=utcnow()):
        raise InvalidInput(f"key {key.prefix} is already revoked")
    return store.get_key(key.id) or key


def rotate(store: AccountStore, ref: str, *, secret: str,
           grace: timedelta = timedelta(seconds=DEFAULT_GRACE_S)) -> tuple[str, ApiKey, ApiKey]:
    """A new key with the old one's tenant, scope, name and remaining lifetime; the old key
    stays valid for ``grace`` (or until it expires, if sooner). Returns (plain, new, old)."""
    old = find_key(store, ref)
    now = utcnow()
    if not old.valid_at(now):
        raise InvalidInput(f"key {old.prefix} is revoked or expired; create a new one")
    plain, new = create_key(store, tenant=old.tenant, secret=secret, scope=old.scope,
                            name=old.name, expires_at=old.expires_at, rotated_from=old.id)
    store.expire_key(old.id, at=now + grace)
    return plain, new, store.get_key(old.id) or old
