"""Cancels at random moments while jobs churn through quota waits: every job ends, and every job
whose cancel was accepted ends `cancelled` (unless its last attempt had already succeeded).

A seeded random loop (reproducible: the seed is in the test id) on every JobStore."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.errors import AlreadyTerminal, RetryLater
from tidegate.core.memory import InMemoryDispatcher
from tidegate.core.registry import Registry
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.core.sweep import SweepConfig, Sweeper


class Waits(BaseModel):
    waits: int = 3


def churn_registry(rng: random.Random) -> Registry:
    reg = Registry()
    seen: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    @reg.job_type("churn", input_model=Waits, priority="medium", max_attempts=2)
    def churn(ctx: JobContext[Waits]) -> str:
        with lock:
            seen[ctx.job_id] += 1
            n, pause = seen[ctx.job_id], rng.uniform(0, 0.004)
        time.sleep(pause)
        if n <= ctx.input.waits:  # the lane is saturated: park, not an attempt
            raise RetryLater(rng.choice([0.0, 0.002]), reason="lane saturated",
                             counts_as_attempt=False, error_code="waiting_for_quota",
                             error_message="lane sim:fast is at its rpm limit")
        ctx.progress(90, "almost")
        return "done"

    return reg


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_cancels_during_quota_churn_never_strand_a_job(store, seed: int) -> None:
    rng = random.Random(seed)
    dispatcher = InMemoryDispatcher()
    registry = churn_registry(rng)
    service = JobService(store, dispatcher, registry)
    # The heartbeat is slow on purpose: the runner rarely learns of a cancel on its own, so
    # the store's own folding of the cancel into the waiting write is what is tested.
    runner = Runner(store, registry, worker_id="w", config=RunnerConfig(heartbeat_s=5))
    sweeper = Sweeper(service, SweepConfig(dispatch_grace_s=0, redispatch_after_s=0.05))
    ids = [service.submit(tenant="t", type="churn", input={"waits": rng.randint(0, 6)})[0].id
           for _ in range(24)]
    cancelled: dict[str, Status] = {}  # cancels accepted, with the status they saw
    stop = threading.Event()

    def canceller() -> None:
        while not stop.is_set():
            time.sleep(rng.uniform(0, 0.01))
            victim = rng.choice(ids)
            if victim in cancelled:
                continue
            with contextlib.suppress(AlreadyTerminal):
                cancelled[victim] = service.cancel(victim, tenant="t").status

    def worker() -> None:
        while not stop.is_set():
            try:
                job_id = dispatcher.sent.pop(0)[0]
            except IndexError:
                time.sleep(0.002)
                continue
            out = runner.run(job_id)
            if out.kind == "retry":
                row = store.get(job_id)
                if row is not None:
                    service.dispatch(row, countdown_s=out.delay_s)

    threads = [threading.Thread(target=canceller)] + [
        threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            sweeper.sweep()
            if all(store.get(i).status.terminal for i in ids):
                break
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    final: dict[str, Any] = {i: store.get(i) for i in ids}
    stuck = {i: (j.status.value, j.cancel_requested) for i, j in final.items()
             if not j.status.terminal}
    assert not stuck, f"jobs that never ended: {stuck}"
    assert cancelled, "the canceller never got a cancel in"
    for job_id, seen in cancelled.items():
        job = final[job_id]
        assert job.status is Status.CANCELLED or (
            job.status is Status.SUCCEEDED and seen is Status.RUNNING), (job_id, seen, job)
    assert not [j for j in final.values() if j.status is Status.FAILED]
