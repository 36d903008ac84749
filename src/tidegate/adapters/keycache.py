"""KeyAuthority: which API key a request carries, cheaply, and which keys are still valid.

Every API process caches key records in memory. Every change to a key but its last use
(create, revoke, rotate) adds one to its row's ``revision``; each process reads the table's
generation (row count, sum of revisions: one small query) at most every ``check_every_s``
(0.5 s) and drops its cache when it moved. So a key revoked by any process, or by the CLI on
another host, is refused by every API process within a second, with no other service
involved. Expiry needs no signal: the cached record carries ``expires_at``, checked on every
use. If the generation cannot be read, the cache is not trusted and requests read the keys.

Last use (time, address) is written at most once per ``touch_every_s`` per key and process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..core.keys import hash_key, lookup
from ..core.models import ApiKey, utcnow
from ..core.ports import AccountStore

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
_UNSET = object()
# What authenticate_cached answers when only authenticate (which may read the database) can.
NEEDS_IO = object()


class KeyAuthority:
    def __init__(self, store: AccountStore, secret: str, *, ttl_s: float = 60.0,
                 check_every_s: float = 0.5, touch_every_s: float = 60.0) -> None:
        self.store = store
        self.secret = secret
        self.ttl_s = ttl_s
        self.check_every_s = check_every_s
        self.touch_every_s = touch_every_s
        self._lock = threading.Lock()
        self._by_hash: dict[str, tuple[ApiKey | None, float]] = {}
        self._by_id: dict[str, tuple[ApiKey | None, float]] = {}
        self._touched: dict[str, float] = {}
        self._generation: object = _UNSET
        self._checked_at = float("-inf")
        self._trusted = False

    # -- invalidation ---------------------------------------------------------------------
    def _fresh(self) -> bool:
        """Whether the cache may be used now; drops it when some key changed anywhere."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < self.check_every_s:
                return self._trusted
            self._checked_at = now
        try:
            generation: object = self.store.keys_generation()
            trusted = True
        except Exception:
            generation, trusted = _UNSET, False
        with self._lock:
            if not trusted or generation != self._generation:
                self._by_hash.clear()
                self._by_id.clear()
            self._generation = generation
            self._trusted = trusted
            return trusted

    def changed(self) -> None:
        """A key changed in this process: forget every cached record now."""
        with self._lock:
            self._by_hash.clear()
            self._by_id.clear()
            self._checked_at = float("-inf")

    def _cached(self, table: dict[str, tuple[ApiKey | None, float]], k: str,
                load: Any) -> ApiKey | None:
        use_cache = self._fresh()
        now = time.monotonic()
        if use_cache:
            with self._lock:
                hit = table.get(k)
            if hit is not None and now - hit[1] < self.ttl_s:
                return hit[0]
        record: ApiKey | None = load()
        if use_cache:
            with self._lock:
                if len(table) >= MAX_ENTRIES:
                    table.clear()
                table[k] = (record, now)
        return record

    # -- questions --------------------------------------------------------------------------
    def authenticate(self, plain: str, *, address: str | None = None) -> ApiKey | None:
        """The record of a valid key (not revoked, not expired), else None."""
        if not plain.startswith("tg_") or len(plain) > 200:
            return None
        record = self._cached(self._by_hash, hash_key(plain, self.secret),
                              lambda: lookup(self.store, plain, self.secret))
        if record is None or not record.valid_at(utcnow()):
            return None
        self._touch(record, address)
        return record

    def authenticate_cached(self, plain: str) -> ApiKey | None | object:
        """authenticate() from memory alone, for the event loop: the key's record, None for
        a key that is not valid, or NEEDS_IO when the answer needs the database (the cache
        is due for its generation check, the key is not cached, or its last use is due to be
        recorded): then call authenticate() off the loop."""
        if not plain.startswith("tg_") or len(plain) > 200:
            return None
        now = time.monotonic()
        digest = hash_key(plain, self.secret)
        with self._lock:
            if not self._trusted or now - self._checked_at >= self.check_every_s:
                return NEEDS_IO
            hit = self._by_hash.get(digest)
            if hit is None or now - hit[1] >= self.ttl_s:
                return NEEDS_IO
            record = hit[0]
            if record is None or not record.valid_at(utcnow()):
                return None
            last = self._touched.get(record.id)
            if last is None or now - last >= self.touch_every_s:
                return NEEDS_IO
        return record

    def is_valid(self, key_id: str) -> bool:
        """Is this key still valid (not revoked, not expired)? Cached; a revocation in any
        process is seen within a second. For long-lived requests (event streams) to re-ask."""
        record = self._cached(self._by_id, key_id, lambda: self.store.get_key(key_id))
        return record is not None and record.valid_at(utcnow())

    def _touch(self, record: ApiKey, address: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(record.id)
            if last is not None and now - last < self.touch_every_s:
                return
            if len(self._touched) >= MAX_ENTRIES:
                self._touched.clear()
            self._touched[record.id] = now
        try:
            self.store.touch_key(record.id, at=utcnow(), address=address)
        except Exception:  # recording use must never refuse a request
            log.warning("could not record the use of key %s", record.prefix, exc_info=True)
