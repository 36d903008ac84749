"""The API dies during a burst of submissions that clients retry with an Idempotency-Key;
and fifty identical requests race on one key."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from .conftest import BROKERS
from .harness import Ledger, Stack, conclude, wait_for

pytestmark = pytest.mark.slow


def submit_until_accepted(ledger: Ledger, client: httpx.Client, key: str, deadline: float,
                          errors: list[str]) -> None:
    """What a careful client does: retry the same request with the same key until a 202."""
    while time.monotonic() < deadline:
        try:
            if ledger.submit(client, "fault_work", {"sleep_s": 0.05, "steps": 1, "tag": key},
                             key=key):
                return
        except httpx.TransportError as exc:
            errors.append(type(exc).__name__)
        time.sleep(0.1)
    raise AssertionError(f"{key} never accepted")


@pytest.mark.parametrize("broker", BROKERS)
def test_api_sigkill_during_a_burst(request: pytest.FixtureRequest,
                                    stack_factory: Callable[..., Stack], broker: str) -> None:
    """7. SIGKILL the API in the middle of a burst from four clients that retry every failed
    request with its Idempotency-Key until they get a 202. Afterwards: one row per key, every
    response for a key named the same job, and every job ran exactly once."""
    stack = stack_factory(broker)
    stack.start_all(concurrency=2)
    ledger = Ledger(stack)
    errors: list[str] = []
    keys = [[f"burst-{t}-{i}" for i in range(12)] for t in range(4)]
    deadline = time.monotonic() + 60

    def client_thread(mine: list[str]) -> None:
        with stack.client(timeout_s=5) as client:
            for key in mine:
                submit_until_accepted(ledger, client, key, deadline, errors)

    threads = [threading.Thread(target=client_thread, args=(k,), daemon=True) for k in keys]
    for t in threads:
        t.start()
    wait_for(lambda: len(ledger.accepted) >= 12, 20, "a dozen accepted")
    stack.api.signal_group(signal.SIGKILL)  # type: ignore[union-attr]
    fault_at = time.monotonic()
    stack.api.wait(5)  # type: ignore[union-attr]
    stack.start_api()
    api_back_s = time.monotonic() - fault_at
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads)
    all_keys = [k for ks in keys for k in ks]
    assert all(len(ledger.by_key[k]) == 1 for k in all_keys), \
        {k: v for k, v in ledger.by_key.items() if len(v) != 1}
    assert stack.count_rows() == len(all_keys)
    conclude(request, ledger, "7 API SIGKILL, idempotent retry", since=fault_at, timeout_s=40,
             client_errors=len(errors), api_back_s=round(api_back_s, 2))
    assert set(stack.exec_log.starts().values()) == {1}
    assert len(stack.exec_log.starts()) == len(all_keys)


def test_fifty_identical_requests_make_one_job(request: pytest.FixtureRequest,
                                               stack_factory: Callable[..., Stack]) -> None:
    """Fifty concurrent identical POSTs with one Idempotency-Key: all 202 with the same job,
    one row, one execution."""
    stack = stack_factory("redis")
    stack.start_all(concurrency=2)
    ledger = Ledger(stack)
    barrier = threading.Barrier(50)
    ids: list[str | None] = []
    lock = threading.Lock()

    def post() -> None:
        with stack.client(timeout_s=30) as client:
            barrier.wait(10)
            job_id = ledger.submit(client, "fault_work", {"sleep_s": 0.2, "steps": 1},
                                   key="same-key")
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=post, daemon=True) for _ in range(50)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 50 and None not in ids, f"refused: {dict(ledger.refused)}"
    assert len(set(ids)) == 1
    assert stack.count_rows() == 1
    conclude(request, ledger, "idempotency: 50 identical POSTs", since=started, timeout_s=20)
    assert stack.exec_log.starts() == {ids[0]: 1}
