"""The limiter when its Redis loses its memory (a restart without persistence, a failover to an
empty replica, FLUSHDB, an eviction): the limits every worker process believes in come back
with its next call, so a lane whose provider sends no rate-limit headers (Gemini) never runs
unlimited. Each test runs its own private redis-server, which it may flush and restart.

The bounds are upper bounds on what was granted, never a speed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import BaseModel

from tests.fault.harness import ProcSet, RedisServer, wait_for
from tidegate.adapters.limiter import RedisLimiter
from tidegate.core.context import JobContext
from tidegate.core.errors import RetryLater
from tidegate.core.limits import SERVICE_POLICY, LaneLimits, LimiterPolicy
from tidegate.core.llm import LLMRequest, LLMResponse, RateLimitInfo
from tidegate.core.memory import InMemoryJobStore
from tidegate.core.models import Job, new_job_id
from tidegate.core.statuses import Priority
from tidegate.llm import GatewayPolicy, LLMGateway
from tidegate.llm_config import load_llm_config
from tidegate.providers import Providers

LANE = "gemini:m"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    procs = ProcSet(tmp_path)
    try:
        yield RedisServer(procs, tmp_path, persist=False).start()
    finally:
        procs.close()  # kills the private server by its PID (its process group)


class Headerless:
    """A provider that answers at once and, like Gemini, advertises no rate limits."""

    name, simulated = "gemini", True

    def complete(self, req: LLMRequest) -> LLMResponse:
        return LLMResponse(text="ok", input_tokens=3, output_tokens=2, model=req.model,
                           provider=self.name, latency_s=0.0, rate_limits=RateLimitInfo(),
                           simulated=True)

    def stream(self, req: LLMRequest) -> Iterator[str]:  # pragma: no cover - unused
        raise NotImplementedError


class Nothing(BaseModel):
    pass


def test_a_flushed_redis_gets_the_gateways_limits_back_on_the_next_call(
        server: RedisServer, tmp_path: Path) -> None:
    cfg = tmp_path / "llm.toml"
    cfg.write_text(f'[jobs.t]\nmodel = "{LANE}"\n[lanes."{LANE}"]\nrpm = 60\n')
    providers = Providers()
    providers.add(Headerless())  # type: ignore[arg-type]
    client = redis.Redis.from_url(server.url)
    limiter = RedisLimiter(client, policy=LimiterPolicy(burst_s=1))  # one request in hand, 1/s
    gateway = LLMGateway(providers, limiter, load_llm_config(str(cfg)),
                         policy=GatewayPolicy(short_wait_s=0.5))
    store = InMemoryJobStore()

    def ask() -> object:
        job, _ = store.create(Job(id=new_job_id(), tenant="t", type="t",
                                  priority=Priority.HIGH, input={}))
        store.claim(job.id, owner="w", lease_s=30)
        ctx = JobContext(job_id=job.id, tenant="t", job_type="t", attempt=1, max_attempts=3,
                         input=Nothing(), store=store, checkpoint={},
                         services={"llm": gateway}, priority="high")
        return ctx.llm.complete([{"role": "user", "content": "hi"}])

    try:
        ask()  # configures the lane and spends the one request in hand
        assert limiter.snapshot(LANE).configured == LaneLimits(rpm=60)
        client.flushdb()  # Redis forgets everything; the worker process does not restart
        with pytest.raises(RetryLater) as refused:  # before the fix: granted, unlimited
            ask()
        assert refused.value.counts_as_attempt is False
        assert limiter.snapshot(LANE).configured == LaneLimits(rpm=60)
        assert limiter.lanes() == [LANE]
    finally:
        gateway.close()
        client.close()


def test_a_redis_restart_under_load_never_lets_a_lane_exceed_its_quota(
        server: RedisServer) -> None:
    """Threads call a 120 rpm lane as fast as they are let; its Redis (no persistence) is
    killed and started again empty halfway. What the workers' policy allows over the run is
    one burst (59 s of quota) plus the rate for the run's length; before the fix the lane
    ran unlimited after the restart."""
    limits, seconds, threads = LaneLimits(rpm=120), 8.0, 4
    lane = "gemini:restart"
    counts = [0] * threads
    errors = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        client = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=0.5)
        lim = RedisLimiter(client, policy=SERVICE_POLICY)
        lim.configure(lane, limits)  # once per process, like the gateway
        n = 0
        while not stop.is_set():
            try:
                a = lim.acquire(lane, input_tokens=0, output_tokens=0, holder=f"t{i}-{n}",
                                ttl_s=10, limits=limits)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                errors[i] += 1  # the server is down: the worker retries
                time.sleep(0.02)
                continue
            if a.granted:
                counts[i] += 1
                n += 1
                with contextlib.suppress(redis.ConnectionError):  # restarted in between
                    lim.settle(lane, a.reservation_id or "", input_tokens=0, output_tokens=0)
            else:
                time.sleep(min(a.wait_s, 0.05))
        client.close()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    wait_for(lambda: sum(counts) > 0, 10, "first grants")
    time.sleep(seconds / 2)
    before = sum(counts)
    admin = redis.Redis.from_url(server.url)
    run_id = admin.info("server")["run_id"]
    server.kill()
    server.start()  # same port, no data: the limiter's Redis lost its memory
    restarted = time.monotonic()
    assert admin.info("server")["run_id"] != run_id
    time.sleep(seconds / 2)
    stop.set()
    for t in pool:
        t.join(10)
    elapsed = time.monotonic() - started
    granted = sum(counts)
    burst = limits.rpm * SERVICE_POLICY.burst_s / SERVICE_POLICY.window_s  # type: ignore[operator]
    quota = burst + limits.rpm / 60 * elapsed  # type: ignore[operator]
    print(f"granted {granted} (before restart {before}) vs quota {quota:.1f} over "
          f"{elapsed:.1f}s, {sum(errors)} calls refused by the down server, "
          f"restart at {restarted - started:.1f}s")
    assert granted > before  # the lane went on after the restart
    assert granted <= quota + 1  # before the fix: thousands (no limits left after the restart)
    after = RedisLimiter(admin, policy=SERVICE_POLICY).snapshot(lane)
    admin.close()
    assert (after.configured, after.in_flight) == (limits, 0)
