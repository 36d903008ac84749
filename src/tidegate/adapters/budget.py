"""RedisBudget and RedisSubmitRate: the shared counters behind tenant budgets and rates.

Key layout (``B`` = :data:`~.redis_keys.BUDGET`, one pair per tenant and period, e.g. period
``d:2026-12-02`` or ``m:2026-12``):

=======================  ======  =============================================================
``B:<tenant>:<period>``    HASH  ``tok``, ``nano``: settled usage this period
``B:<tenant>:<period>:r``  HASH  open reservation id -> ``"tok nano expiry_ms"``
``tg:rpm:<tenant>``        ZSET  submission id -> ms, the last minute's submissions
=======================  ======  =============================================================

Each operation is one Lua script (``budget_lua/*.lua``, headed by its KEYS/ARGV), so a check
and its reservation never interleave with another worker's. When Redis lost a period's used
hash (restart without persistence, eviction), the next reservation rebuilds it from the
database (``AccountStore.usage_since``), the truth.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.budget import Left, Period, periods
from ..core.models import TenantSettings
from ..core.ports import AccountStore
from .redis_keys import BUDGET, STREAMS, SUBMIT_RATE, join_key

_LUA = Path(__file__).with_name("budget_lua")
_TTL_S = {"daily": 3 * 86400, "monthly": 40 * 86400}


def _script(client: Any, name: str) -> Any:
    return client.register_script((_LUA / f"{name}.lua").read_text())


def _num(v: Any) -> int | None:
    s = v.decode() if isinstance(v, bytes) else str(v)
    return None if s == "x" else int(s)


class RedisBudget:
    def __init__(self, client: Any, accounts: AccountStore) -> None:
        self.client = client
        self.accounts = accounts
        self._reserve = _script(client, "reserve")
        self._settle = _script(client, "settle")
        self._seed = _script(client, "seed")

    @staticmethod
    def _keys(tenant: str, ps: list[Period]) -> list[str]:
        keys: list[str] = []
        for p in ps:
            used = join_key(BUDGET, tenant, p.key)
            keys += [used, used + ":r"]
        return keys

    def _run(self, settings: TenantSettings, *, rid: str, tokens: int, nanos: int,
             ttl_s: float, now: datetime, mode: str) -> tuple[bool, list[Left]]:
        ps = periods(settings, now)
        if not ps:
            return True, []
        keys = self._keys(settings.name, ps)
        now_ms = int(now.timestamp() * 1000)
        argv: list[Any] = [now_ms, rid, int(tokens), int(nanos), now_ms + int(ttl_s * 1000),
                           mode]
        for p in ps:
            argv += [-1 if p.limit_tokens is None else p.limit_tokens,
                     -1 if p.limit_nanos is None else p.limit_nanos, _TTL_S[p.name]]
        for _ in range(3):
            out = self._reserve(keys=keys, args=argv)
            if int(out[0]) != -1:
                break
            p = ps[int(out[1]) - 1]
            spent = self.accounts.usage_since(settings.name, p.start)
            self._seed(keys=[keys[2 * (int(out[1]) - 1)]],
                       args=[spent.input_tokens + spent.output_tokens, spent.cost_nanos,
                             _TTL_S[p.name]])
        else:  # pragma: no cover - evicted as fast as it is rebuilt
            raise RuntimeError("budget counters could not be rebuilt in Redis")
        left = [Left(p, _num(out[1 + 2 * i]), _num(out[2 + 2 * i])) for i, p in enumerate(ps)]
        return int(out[0]) == 1, left

    def reserve(self, settings: TenantSettings, rid: str, *, tokens: int, nanos: int,
                ttl_s: float, now: datetime) -> list[Left] | None:
        granted, left = self._run(settings, rid=rid, tokens=tokens, nanos=nanos, ttl_s=ttl_s,
                                  now=now, mode="reserve")
        return None if granted else left

    def settle(self, settings: TenantSettings, rid: str, *, tokens: int, nanos: int,
               now: datetime) -> None:
        ps = periods(settings, now)
        if ps:
            self._settle(keys=self._keys(settings.name, ps), args=[rid, int(tokens), int(nanos)])

    def refund(self, settings: TenantSettings, rid: str, *, now: datetime) -> None:
        self.settle(settings, rid, tokens=0, nanos=0, now=now)

    def left(self, settings: TenantSettings, *, now: datetime) -> list[Left]:
        return self._run(settings, rid="", tokens=0, nanos=0, ttl_s=0, now=now,
                         mode="peek")[1]


class RedisSubmitRate:
    def __init__(self, client: Any) -> None:
        self._hit = _script(client, "submit_rate")

    def hit(self, tenant: str, rpm: int) -> float | None:
        if rpm <= 0:
            return 60.0
        ms = int(self._hit(keys=[join_key(SUBMIT_RATE, tenant)], args=[rpm, uuid.uuid4().hex]))
        return None if ms < 0 else ms / 1000


class RedisStreamSlots:
    """A tenant's open event streams, capped (``max_streams``). A stream takes a slot when
    it opens, renews it while open (``ttl_s`` is the longest a dead API process holds one)
    and gives it back when it closes."""

    def __init__(self, client: Any, *, ttl_s: float = 30.0) -> None:
        self._slot = _script(client, "stream_slot")
        self.ttl_ms = int(ttl_s * 1000)

    def _call(self, op: str, tenant: str, stream_id: str, max_open: int = 0) -> bool:
        return bool(int(self._slot(keys=[join_key(STREAMS, tenant)],
                                   args=[op, stream_id, max_open, self.ttl_ms])))

    def take(self, tenant: str, stream_id: str, max_open: int) -> bool:
        return self._call("take", tenant, stream_id, max_open)

    def renew(self, tenant: str, stream_id: str) -> bool:
        return self._call("renew", tenant, stream_id)

    def give(self, tenant: str, stream_id: str) -> None:
        self._call("give", tenant, stream_id)
