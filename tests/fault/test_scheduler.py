"""The scheduler and cancellation: two schedulers, one leads, the other takes over; a job
cancelled while no worker runs never runs."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from .conftest import BROKERS
from .harness import Ledger, Stack, conclude, wait_for

pytestmark = pytest.mark.slow

LEADS = "scheduler is the leader"


def test_two_schedulers_one_leads_and_takes_over(request: pytest.FixtureRequest,
                                                 stack_factory: Callable[..., Stack]) -> None:
    """10. Two `tidegate beat`: exactly one leads. SIGKILL the leader together with the worker
    running jobs: the other takes over once the lock lapses, and its sweep requeues the jobs
    whose leases expired, which a new worker then completes."""
    import redis

    stack = stack_factory("redis")
    stack.start_all(concurrency=2, beat=False)
    beats = [stack.start_beat(wait=False), stack.start_beat(wait=False)]
    leader = wait_for(lambda: next((b for b in beats if LEADS in b.text()), None), 30,
                      "a leader")
    standby = beats[1 - beats.index(leader)]
    client = redis.Redis.from_url(stack.redis_url + "/1")
    request.addfinalizer(client.close)
    time.sleep(2.5)  # several sweep periods: the standby must stay a standby
    assert LEADS not in standby.text()
    assert client.get("tg:beat:leader") is not None
    ledger = Ledger(stack)
    with stack.client() as http:
        ids = [ledger.submit(http, "fault_work", {"sleep_s": 3, "steps": 6}) for _ in range(2)]
    wait_for(lambda: all(r["status"] == "running" for r in stack.rows(ids).values()), 20,
             "jobs running")
    stack.workers[0].signal_group(signal.SIGKILL)
    leader.signal_group(signal.SIGKILL)
    fault_at = time.monotonic()
    stack.start_worker(concurrency=2)
    wait_for(lambda: LEADS in standby.text(), 30, "the standby took over")
    takeover_s = time.monotonic() - fault_at
    conclude(request, ledger, "10 two schedulers, leader killed", since=fault_at,
             timeout_s=45, takeover_s=round(takeover_s, 2))
    assert all("requeued" in [k for k, _ in ev] for ev in stack.events(ids).values())
    assert [b for b in beats if b.alive()] == [standby]


@pytest.mark.parametrize("broker", BROKERS)
def test_cancelled_while_no_worker_runs(request: pytest.FixtureRequest,
                                        stack_factory: Callable[..., Stack],
                                        broker: str) -> None:
    """11. Every worker stops (SIGTERM; running jobs are handed back), jobs are cancelled
    (handed back, queued and submitted after the stop), then a worker starts: none of them
    runs again, all end `cancelled`."""
    stack = stack_factory(broker)
    stack.start_all(concurrency=2)
    ledger = Ledger(stack)
    with stack.client() as http:
        running = [ledger.submit(http, "fault_work", {"sleep_s": 10, "steps": 20})
                   for _ in range(2)]
        waiting = [ledger.submit(http, "fault_work", {"sleep_s": 0.2, "steps": 1})
                   for _ in range(3)]
        wait_for(lambda: all(r["status"] == "running" for r in stack.rows(running).values()),
                 20, "two jobs running")
        worker = stack.workers[0]
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) is not None, "the worker did not stop"
        fault_at = time.monotonic()
        later = [ledger.submit(http, "fault_work", {"sleep_s": 0.2, "steps": 1})
                 for _ in range(3)]
        before = stack.exec_log.starts()
        for job_id in ledger.accepted:
            r = http.delete(f"/v1/jobs/{job_id}")
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    stack.start_worker(concurrency=2)
    verdict = conclude(request, ledger, "11 cancel while workers stopped", since=fault_at,
                       timeout_s=20)
    time.sleep(1)  # the worker has had every stale message by now
    assert verdict.statuses == {"cancelled": 8}
    assert stack.exec_log.starts() == before
    assert not any(before.get(j) for j in waiting + later)
    assert all(r["status"] == "cancelled" for r in stack.rows(ledger.accepted).values())
