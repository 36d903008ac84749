"""No call paid twice: identical calls share one provider answer.

Two opt-in mechanisms per job type (``dedup`` and ``cache_ttl_s``, in code or in the LLM
settings' ``[jobs.<type>]``), both keyed by a hash of everything that decides the answer (lane,
messages, max output tokens, temperature, JSON mode) and scoped to the tenant unless the
operator shares them (``[reuse] shared_across_tenants``):

- **in-flight dedup**: the first of several identical calls made at once by different jobs
  takes the *lead* (a key with a TTL, so a leader that dies frees it) and calls the provider;
  the others wait for its answer, published under the lead's token for a minute. A follower
  that arrives after the answer was published does not get it (that would be a cache); one
  whose leader failed takes the lead itself.
- **response cache**: a successful answer is kept for ``cache_ttl_s``; a later identical call
  is answered from it without touching the limiter, the budget or the provider.

A reused answer costs the job nothing: its ``llm_call`` event says ``reused`` ("cache" or
"inflight") and what it saved, and the tenant's usage counts it as a saved request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..core.llm import LLMResponse, Message

# How long a leader's answer stays readable by the followers that were waiting for it.
ANSWER_KEEP_S = 60.0
PREFIX = "tg:reuse"


@dataclass(frozen=True, slots=True)
class Answer:
    """What is kept of a provider's answer: enough to give a follower the same response."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    provider: str
    lane: str
    cost_nanos: int
    unpriced: bool
    simulated: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Answer:
        return cls(**json.loads(raw))

    def response(self) -> LLMResponse:
        return LLMResponse(text=self.text, input_tokens=self.input_tokens,
                           output_tokens=self.output_tokens, model=self.model,
                           provider=self.provider, latency_s=0.0, simulated=self.simulated)


def reuse_key(scope: str, lane: str, messages: Sequence[Message], *, max_output_tokens: int,
              temperature: float | None, json_output: bool) -> str:
    """The identity of a call: equal only when the provider would be asked the same thing."""
    canonical = json.dumps({"lane": lane, "messages": [[m.role, m.content] for m in messages],
                            "max_output_tokens": max_output_tokens,
                            "temperature": temperature, "json": json_output},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    # The scope is hashed too: tenant names never appear in key names.
    tenant = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return f"{tenant}:{digest}"


class AnswerStore(Protocol):
    """Where answers are shared between workers (Redis; in memory for tests)."""

    def cached(self, key: str) -> Answer | None: ...
    def keep(self, key: str, answer: Answer, ttl_s: float) -> None: ...
    def lead(self, key: str, ttl_s: float) -> tuple[bool, str | None]:
        """Take the lead of ``key``: (True, my token), or (False, the leader's token) — the
        token None when the lead vanished between the two looks (try again)."""
        ...
    def publish(self, key: str, token: str, answer: Answer | None) -> None:
        """The leader is done: share its answer (None: it failed) and free the lead."""
        ...
    def answer_of(self, key: str, token: str) -> tuple[Answer | None, bool]:
        """(the answer the leader ``token`` published, whether that lead is still held)."""
        ...


# Free the lead only if it is still ours (a leader slower than the TTL must not free another's).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisAnswers:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)

    def cached(self, key: str) -> Answer | None:
        raw = self.redis.get(f"{PREFIX}:cache:{key}")
        return Answer.from_json(raw) if raw else None

    def keep(self, key: str, answer: Answer, ttl_s: float) -> None:
        self.redis.set(f"{PREFIX}:cache:{key}", answer.to_json(), px=max(1, int(ttl_s * 1000)))

    def lead(self, key: str, ttl_s: float) -> tuple[bool, str | None]:
        token = uuid.uuid4().hex
        lead = f"{PREFIX}:lead:{key}"
        if self.redis.set(lead, token, nx=True, px=max(1, int(ttl_s * 1000))):
            return True, token
        other = self.redis.get(lead)
        return False, other.decode() if isinstance(other, bytes) else other

    def publish(self, key: str, token: str, answer: Answer | None) -> None:
        pipe = self.redis.pipeline()
        if answer is not None:
            pipe.set(f"{PREFIX}:answer:{key}:{token}", answer.to_json(),
                     px=int(ANSWER_KEEP_S * 1000))
        pipe.execute()
        self._release(keys=[f"{PREFIX}:lead:{key}"], args=[token])

    def answer_of(self, key: str, token: str) -> tuple[Answer | None, bool]:
        pipe = self.redis.pipeline()
        pipe.get(f"{PREFIX}:answer:{key}:{token}")
        pipe.get(f"{PREFIX}:lead:{key}")
        raw, lead = pipe.execute()
        if isinstance(lead, bytes):
            lead = lead.decode()
        return (Answer.from_json(raw) if raw else None), lead == token


class MemoryAnswers:
    """One process's answers (tidegate.testing, single-process setups)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, Any]] = {}

    def _get(self, name: str) -> Any:
        entry = self._values.get(name)
        if entry is None or entry[0] <= self.clock():
            self._values.pop(name, None)
            return None
        return entry[1]

    def _set(self, name: str, value: Any, ttl_s: float) -> None:
        self._values[name] = (self.clock() + ttl_s, value)

    def cached(self, key: str) -> Answer | None:
        with self._lock:
            answer: Answer | None = self._get(f"cache:{key}")
            return answer

    def keep(self, key: str, answer: Answer, ttl_s: float) -> None:
        with self._lock:
            self._set(f"cache:{key}", answer, ttl_s)

    def lead(self, key: str, ttl_s: float) -> tuple[bool, str | None]:
        with self._lock:
            other = self._get(f"lead:{key}")
            if other is not None:
                return False, str(other)
            token = uuid.uuid4().hex
            self._set(f"lead:{key}", token, ttl_s)
            return True, token

    def publish(self, key: str, token: str, answer: Answer | None) -> None:
        with self._lock:
            if answer is not None:
                self._set(f"answer:{key}:{token}", answer, ANSWER_KEEP_S)
            if self._get(f"lead:{key}") == token:
                self._values.pop(f"lead:{key}", None)

    def answer_of(self, key: str, token: str) -> tuple[Answer | None, bool]:
        with self._lock:
            return self._get(f"answer:{key}:{token}"), self._get(f"lead:{key}") == token
