"""RedisLimiter under real contention: several processes, a real Redis, the server's clock.

Every bound checked here is an upper bound on what was granted (or a count), never a speed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from typing import Any

import pytest
import redis

from tests.services import REDIS_URL
from tidegate.adapters.limiter import RedisLimiter
from tidegate.core.limits import LaneLimits, LimiterPolicy

LANE = "sim:model@key1"
PROCESSES = 4


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def _limiter(prefix: str, **policy: Any) -> tuple[redis.Redis, RedisLimiter]:
    client = redis.Redis.from_url(REDIS_URL)
    return client, RedisLimiter(client, prefix=prefix, policy=LimiterPolicy(**policy))


def _hammer(prefix: str, worker: int, seconds: float, policy: dict[str, Any],
            priority: str, max_tokens: int, hold_s: float) -> dict[str, int]:
    """One worker process: call after call, each retried (same holder) until granted."""
    client, lim = _limiter(prefix, **policy)
    rng = random.Random(worker)
    grants = max_active = calls = 0
    holder, tokens = f"w{worker}-0", rng.randint(0, max_tokens)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        a = lim.acquire(LANE, input_tokens=tokens, output_tokens=0, priority=priority,  # type: ignore[arg-type]
                        holder=holder, ttl_s=10)
        if not a.granted:
            time.sleep(min(a.wait_s, 0.02))
            continue
        grants += 1
        if hold_s:  # count holders that are inside their reservation right now
            max_active = max(max_active, int(client.incr(prefix + "active")))
            time.sleep(hold_s)
            client.decr(prefix + "active")
        lim.settle(LANE, a.reservation_id or "", input_tokens=tokens, output_tokens=0)
        calls += 1
        holder, tokens = f"w{worker}-{calls}", rng.randint(0, max_tokens)
    client.close()
    return {"grants": grants, "max_active": max_active}


def _run(prefix: str, seconds: float, policy: dict[str, Any], priorities: list[str],
         max_tokens: int = 0, hold_s: float = 0.0) -> list[dict[str, int]]:
    # spawn, not fork: forking a test process that already runs threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(priorities)) as pool:
        work = pool.starmap_async(_hammer, [(prefix, i, seconds, policy, p, max_tokens, hold_s)
                                            for i, p in enumerate(priorities)])
        return work.get(timeout=seconds + 60)


def _grant_log(prefix: str) -> list[tuple[int, int]]:
    """(server grant ms, input tokens) of every grant still in the window, oldest first."""
    client = redis.Redis.from_url(REDIS_URL)
    base = f"{prefix}{{{LANE}}}:"
    entries = client.zrange(base + "log", 0, -1, withscores=True)
    amounts = client.hmget(base + "amt", [rid for rid, _ in entries]) if entries else []
    client.close()
    return [(int(t), int(a.split()[0])) for (_, t), a in zip(entries, amounts, strict=True)]


def test_quota_is_granted_exactly_once_under_contention(prefix: str) -> None:
    _, lim = _limiter(prefix, burst_s=60)  # no pacing: the whole minute's 40 at once
    lim.configure(LANE, LaneLimits(rpm=40))
    results = _run(prefix, 1.5, {"burst_s": 60}, ["medium"] * PROCESSES)
    assert sum(r["grants"] for r in results) == 40  # never 41; and none of it left idle
    assert len(_grant_log(prefix)) == 40
    assert lim.snapshot(LANE).requests_1m == 40


def test_paced_grants_stay_within_the_bucket_in_every_interval(prefix: str) -> None:
    policy = {"burst_s": 0.5}
    _, lim = _limiter(prefix, **policy)
    lim.configure(LANE, LaneLimits(rpm=1200, input_tpm=60_000))  # 20 req/s, 1000 tokens/s
    results = _run(prefix, 2.0, policy, ["high", "high", "low", "low"], max_tokens=100)
    grants = _grant_log(prefix)
    assert len(grants) == sum(r["grants"] for r in results) > 0
    cap_req, cap_tok = 1200 * 0.5 / 60, 60_000 * 0.5 / 60  # 10 requests, 500 tokens
    for i, (start, _) in enumerate(grants):
        for span_ms in (0, 50, 200, 1000):
            inside = [tok for t, tok in grants[i:] if t <= start + span_ms]
            assert len(inside) <= cap_req + 1200 / 60_000 * span_ms + 1e-6
            assert sum(inside) <= cap_tok + 60_000 / 60_000 * span_ms + 1e-6
    high, low = results[0]["grants"] + results[1]["grants"], results[2]["grants"] + results[3]["grants"]
    assert high > low  # high goes first when both contend


def test_concurrency_cap_is_never_exceeded(prefix: str) -> None:
    _, lim = _limiter(prefix)
    lim.configure(LANE, LaneLimits(concurrency=3))
    results = _run(prefix, 1.5, {}, ["medium"] * PROCESSES, hold_s=0.005)
    assert max(r["max_active"] for r in results) <= 3
    assert sum(r["grants"] for r in results) > 0
    assert lim.snapshot(LANE).in_flight == 0


def _acquire_and_die(prefix: str) -> None:
    _, lim = _limiter(prefix)
    a = lim.acquire(LANE, input_tokens=1, output_tokens=1, holder="doomed", ttl_s=3.0)
    os._exit(0 if a.granted else 1)  # dies holding the slot: no settle, no cleanup


def test_a_dead_holders_reservation_expires_on_its_own(prefix: str) -> None:
    _, lim = _limiter(prefix)
    lim.configure(LANE, LaneLimits(concurrency=1))
    child = multiprocessing.get_context("spawn").Process(target=_acquire_and_die,
                                                         args=(prefix,))
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    first = lim.acquire(LANE, input_tokens=1, output_tokens=1, holder="next", ttl_s=5)
    assert not first.granted and first.reason == "concurrency" and first.wait_s <= 3.0
    deadline = time.monotonic() + 10  # generous: only guards against a hang
    a = first
    while not a.granted and time.monotonic() < deadline:
        time.sleep(a.wait_s)
        a = lim.acquire(LANE, input_tokens=1, output_tokens=1, holder="next", ttl_s=5)
    assert a.granted
    assert lim.snapshot(LANE).in_flight == 1
