"""Fair shares of a lane across worker processes, on a real Redis and the server's clock.

Four processes play workers around one FIFO queue in Redis (a broker): each takes a job, asks
the RedisLimiter for its call as the job's tenant, waits a short refusal out in place and puts
a job refused for longer back with a countdown, as the LLM gateway does. Tenant A queues a
backlog first, tenant B a few jobs behind it. What is checked is the order of grants (a
count), never a speed.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from tests.services import REDIS_URL
from tidegate.adapters.limiter import RedisLimiter
from tidegate.core.limits import LaneLimits, LimiterPolicy

LANE = "sim:fair@key1"
PROCESSES = 4
POLICY = {"burst_s": 1.0}  # 600 RPM: 10 at once, then one every 100 ms
SHORT_WAIT_S = 0.3  # like the gateway's short_wait_s: shorter waits are slept in place


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def _worker(prefix: str, weights: dict[str, float], total: int, deadline_s: float) -> None:
    """Take jobs from the queue until every job was granted its call (or the deadline)."""
    client = redis.Redis.from_url(REDIS_URL)
    lim = RedisLimiter(client, prefix=prefix, policy=LimiterPolicy(**POLICY))  # type: ignore[arg-type]
    queue, delayed, grants = prefix + "queue", prefix + "delayed", prefix + "grants"
    client.incr(prefix + "ready")
    deadline = time.monotonic() + deadline_s
    while not client.exists(prefix + "go") and time.monotonic() < deadline:
        time.sleep(0.01)  # every worker is up before the first job is queued
    while time.monotonic() < deadline and client.llen(grants) < total:
        for job in client.zrangebyscore(delayed, "-inf", time.time(), start=0, num=20):
            if client.zrem(delayed, job):  # one worker wins each due job
                client.rpush(queue, job)
        job = client.lpop(queue)
        if job is None:
            time.sleep(0.005)
            continue
        tenant = job.decode().split("-")[0]
        while True:
            a = lim.acquire(LANE, input_tokens=0, output_tokens=0, holder=job.decode(),
                            ttl_s=10, tenant=tenant, weight=weights[tenant])
            if a.granted:
                client.rpush(grants, job)
                lim.settle(LANE, a.reservation_id or "", input_tokens=0, output_tokens=0)
                break
            if a.wait_s > SHORT_WAIT_S:  # give the slot back: the job comes back when told
                client.zadd(delayed, {job: time.time() + a.wait_s})
                break
            time.sleep(a.wait_s)
    client.close()


def _run(prefix: str, jobs: list[str], weights: dict[str, float]) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL)
    RedisLimiter(client, prefix=prefix, policy=LimiterPolicy(**POLICY)).configure(  # type: ignore[arg-type]
        LANE, LaneLimits(rpm=600))
    # spawn, not fork: forking a test process that already runs threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        work = pool.starmap_async(_worker, [(prefix, weights, len(jobs), 90.0)] * PROCESSES)
        deadline = time.monotonic() + 60
        while int(client.get(prefix + "ready") or 0) < PROCESSES:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        client.rpush(prefix + "queue", *jobs)
        client.set(prefix + "go", 1)
        work.get(120)
    order = [g.decode() for g in client.lrange(prefix + "grants", 0, -1)]
    client.close()
    assert sorted(order) == sorted(jobs)  # every job got its call, exactly once
    return order


def test_a_backlog_of_one_tenant_does_not_hold_back_anothers_few_jobs(prefix: str) -> None:
    jobs = [f"a-{i}" for i in range(80)] + [f"b-{i}" for i in range(6)]
    order = _run(prefix, jobs, {"a": 1.0, "b": 1.0})
    last_b = max(i for i, job in enumerate(order) if job.startswith("b"))
    # First come, first served would grant B's jobs last (positions 80-85). Fair shares:
    # the burst (10) and what was granted while the workers first reached B's jobs, then
    # one of B's for each of A's.
    assert last_b < 40, order
    print(f"\nfair shares: B's 6 jobs behind A's 80 were granted by position {last_b + 1}")


def test_a_heavier_tenant_gets_more_of_the_lane(prefix: str) -> None:
    jobs = [f"a-{i}" for i in range(40)] + [f"b-{i}" for i in range(40)]
    order = _run(prefix, jobs, {"a": 1.0, "b": 3.0})
    # Once both wait, B (weight 3) gets about three calls to A's one.
    middle = order[20:60]
    b_share = sum(job.startswith("b") for job in middle) / len(middle)
    assert 0.6 <= b_share <= 0.9, order
    print(f"\nweights 1:3 -> B had {b_share:.0%} of grants 21-60")
