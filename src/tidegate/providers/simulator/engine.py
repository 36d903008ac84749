"""Vendor-neutral request handling: auth, context check, quota, fault injection, latency, text.

Vendor modules parse their wire format into a :class:`Call`, run it through :class:`SimState`,
and render the outcome (or the :class:`SimFailure`) in their own shapes.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from tidegate.providers.simulator.config import SimulatorConfig
from tidegate.providers.simulator.quota import Admission, QuotaStore
from tidegate.providers.simulator.text import (
    generate_json,
    generate_text,
    output_length,
    wants_json,
)
from tidegate.providers.simulator.tokenizer import counter

if TYPE_CHECKING:
    from tidegate.providers.simulator.batches import BatchStore

COUNTERS = ("requests", "ok", "rate_limited", "server_errors", "client_errors", "hangs",
            "malformed", "input_tokens", "output_tokens",
            "hangs_disconnected",  # the client closed the connection of a hanging request
            "batched")  # requests answered inside a batch (simulator/batches.py)


@dataclass(slots=True)
class Call:
    vendor: str  # "openai" | "anthropic" | "gemini"
    key: str | None
    model: str
    prompt: str  # every message's text, joined: what the answer is derived from
    input_tokens: int
    max_tokens: int = 0  # 0 for embeddings
    json_mode: bool = False


@dataclass(slots=True)
class Completion:
    text: str
    output_tokens: int
    truncated: bool  # stopped by max_tokens
    first_byte_s: float
    per_token_s: float


class SimFailure(Exception):
    """An answer other than success; ``kind`` picks the vendor's error shape."""

    def __init__(self, status: int, kind: str, message: str, *, retry_after_s: float | None = None,
                 admission: Admission | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.retry_after_s, self.admission = retry_after_s, admission


def key_label(key: str | None) -> str:
    """How a key appears in stats: never the key itself (real keys may be pointed here)."""
    if not key:
        return "(none)"
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


class SimState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._rng = random.Random(config.seed)  # fault dice and latency: seeded, but shared
        self.stopping = threading.Event()
        self._reset_counters()
        self.quotas = self._new_quotas(config)
        self._prompt_cache: dict[tuple[str, str, str, str], float] = {}  # prefix -> expiry
        counter(config.tokenizer)  # a tokenizer that cannot load stops the simulator at start
        self.batches: BatchStore | None = None  # set by create_app (simulator/batches.py)

    def prompt_cache(self, call: Call, prefix: str) -> tuple[int, int]:
        """(tokens read from the cache, tokens written to it) for a prompt that starts with
        ``prefix``: a prefix seen within ``cache_ttl_s`` for the same key and model is read,
        a new one written; one below ``cache_min_tokens`` is neither."""
        n = self.tokens(prefix) if prefix else 0
        if n < self.config.cache_min_tokens:
            return 0, 0
        entry = (call.vendor, key_label(call.key), call.model,
                 hashlib.sha256(prefix.encode()).hexdigest())
        now = time.monotonic()
        with self._lock:
            expires = self._prompt_cache.get(entry)
            self._prompt_cache[entry] = now + self.config.cache_ttl_s
            if len(self._prompt_cache) > 10_000:  # bounded: forget the expired ones
                self._prompt_cache = {k: v for k, v in self._prompt_cache.items() if v > now}
        return (n, 0) if expires is not None and expires > now else (0, n)

    def tokens(self, text: str) -> int:
        """Tokens in ``text`` as this simulator counts them (``tokenizer`` in its config)."""
        return counter(self.config.tokenizer)(text)

    @staticmethod
    def _new_quotas(c: SimulatorConfig) -> QuotaStore:
        return QuotaStore(c.rpm, c.tpm, c.input_tpm, c.output_tpm)

    def _reset_counters(self) -> None:
        self.counters: dict[str, dict[str, dict[str, int]]] = {
            dim: defaultdict(lambda: dict.fromkeys(COUNTERS, 0)) for dim in ("vendor", "key", "model")
        }
        self.totals = dict.fromkeys(COUNTERS, 0)

    def reconfigure(self, changes: dict[str, Any]) -> SimulatorConfig:
        with self._lock:
            new = self.config.updated(changes)
            counter(new.tokenizer)  # refuse a tokenizer that cannot load
            if new.quota_fields_differ(self.config):
                self.quotas = self._new_quotas(new)
            if new.seed != self.config.seed:
                self._rng = random.Random(new.seed)
            self.config = new
            return new

    def reset(self, *, config: bool = False) -> None:
        with self._lock:
            if config:
                self.config = self.initial_config
            self._reset_counters()
            self.quotas = self._new_quotas(self.config)
            self._rng = random.Random(self.config.seed)
            self._prompt_cache = {}
        if self.batches is not None:
            self.batches.reset()

    def next_id(self) -> int:
        return next(self._ids)

    def count(self, call: Call, **inc: int) -> None:
        with self._lock:
            for dim, value in (("vendor", call.vendor), ("key", key_label(call.key)),
                               ("model", f"{call.vendor}:{call.model}")):
                row = self.counters[dim][value]
                for name, n in inc.items():
                    row[name] += n
            for name, n in inc.items():
                self.totals[name] += n

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"total": dict(self.totals),
                    **{f"by_{dim}": {k: dict(v) for k, v in rows.items()}
                       for dim, rows in self.counters.items()}}

    def roll(self) -> float:
        with self._lock:
            return self._rng.random()

    def admit(self, call: Call) -> tuple[Admission, str]:
        """Check and charge one call. Returns the admission and a fault ("", "hang", "malformed");
        raises :class:`SimFailure` for auth, context, quota and injected 5xx answers."""
        c = self.config
        self.count(call, requests=1)
        if not call.key or (c.valid_keys is not None and call.key not in c.valid_keys):
            self.count(call, client_errors=1)
            raise SimFailure(401, "auth", "invalid or missing API key")
        if call.input_tokens > c.context_window:
            self.count(call, client_errors=1)
            raise SimFailure(400, "context", f"{call.input_tokens} > {c.context_window}")
        scope = call.key if c.quota_scope == "key" else f"{call.key}\x1f{call.vendor}:{call.model}"
        adm = self.quotas.admit(scope, call.input_tokens, call.max_tokens)
        if not adm.allowed:
            self.count(call, rate_limited=1)
            raise SimFailure(429, "never_fits" if adm.never_fits else "rate_limit",
                             f"rate limit exceeded ({adm.exhausted})",
                             retry_after_s=adm.retry_after_s, admission=adm)
        for status, rate in ((500, c.error_500_rate), (503, c.error_503_rate),
                             (529, c.error_529_rate)):
            if rate and self.roll() < rate:
                self.count(call, server_errors=1)
                raise SimFailure(status, {500: "server", 503: "unavailable", 529: "overloaded"}[status],
                                 "injected failure", admission=adm)
        if c.hang_rate and self.roll() < c.hang_rate:
            self.count(call, hangs=1)
            return adm, "hang"
        if c.malformed_rate and self.roll() < c.malformed_rate:
            self.count(call, malformed=1)
            return adm, "malformed"
        return adm, ""

    def complete(self, call: Call) -> Completion:
        c = self.config
        n, truncated = output_length(c.seed, call.prompt, c.output_tokens_min, c.output_tokens_max,
                                     call.max_tokens)
        if wants_json(call.prompt, call.json_mode):
            text, truncated = generate_json(c.seed, call.prompt, call.max_tokens), False
        else:
            text = generate_text(c.seed, call.prompt, n, whole_sentences=not truncated)
        out = self.tokens(text)
        self.count(call, ok=1, input_tokens=call.input_tokens, output_tokens=out)
        return Completion(text, out, truncated, self.first_byte_s(), c.per_token_ms / 1000.0)

    def first_byte_s(self) -> float:
        c = self.config
        lo, hi = c.latency_min_ms, c.latency_max_ms
        with self._lock:
            if c.latency_dist == "lognormal":
                mid = (lo + hi) / 2.0
                ms = lo + (mid - lo) * math.exp(self._rng.gauss(0.0, c.latency_sigma))
            else:
                ms = self._rng.uniform(lo, hi)
        return ms / 1000.0

    def count_embedding(self, call: Call) -> None:
        self.count(call, ok=1, input_tokens=call.input_tokens)

    async def hang(self, request: Request) -> None:
        """Say nothing for ``hang_s``; stop early once the client gives up or the server stops."""
        deadline = time.monotonic() + self.config.hang_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            if await request.is_disconnected():
                with self._lock:
                    self.totals["hangs_disconnected"] += 1
                return
            await asyncio.sleep(0.05)


def chunk_text(text: str, words_per_chunk: int = 3) -> list[str]:
    """Split into stream deltas of a few words each, keeping whitespace so they re-join exactly."""
    parts = text.split(" ")
    out = []
    for i in range(0, len(parts), words_per_chunk):
        piece = " ".join(parts[i:i + words_per_chunk])
        out.append(piece if i + words_per_chunk >= len(parts) else piece + " ")
    return [p for p in out if p]
