"""One body, every JobStore: in-memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tidegate.core.models import Job, JobEvent, Usage, new_job_id, utcnow
from tidegate.core.statuses import Priority, Status


def make_job(tenant: str = "acme", key: str | None = None, **kw: object) -> Job:
    now = utcnow()
    return Job(id=new_job_id(), tenant=tenant, type="echo", priority=Priority.MEDIUM,
               input={"text": "hi"}, idempotency_key=key, created_at=now, updated_at=now,
               **kw)  # type: ignore[arg-type]


def claim(store, job: Job, owner: str = "w1", lease_s: float = 30):
    now = utcnow()
    return store.claim(job.id, owner=owner, lease_until=now + timedelta(seconds=lease_s), now=now)


def test_create_and_get_is_tenant_scoped(store) -> None:
    job, created = store.create(make_job())
    assert created
    assert store.get(job.id, tenant="acme").input == {"text": "hi"}
    assert store.get(job.id, tenant="other") is None
    assert store.get("missing") is None


def test_idempotency_key_returns_the_first_job(store) -> None:
    first, created = store.create(make_job(key="k1"))
    again, created_again = store.create(make_job(key="k1"))
    other_tenant, created_other = store.create(make_job(tenant="zeta", key="k1"))
    assert created and not created_again and created_other
    assert again.id == first.id
    assert other_tenant.id != first.id


def test_idempotency_under_concurrency(store) -> None:
    def submit(_: int) -> str:
        return store.create(make_job(key="same"))[0].id

    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(submit, range(50)))
    assert len(ids) == 1
    assert len(store.list(tenant="acme", limit=100).jobs) == 1


def test_claim_is_conditional_and_counts_attempts(store) -> None:
    job, _ = store.create(make_job())
    claimed = claim(store, job)
    assert claimed is not None and claimed.status is Status.RUNNING and claimed.attempts == 1
    assert claimed.started_at is not None
    assert claim(store, job, owner="w2") is None  # a duplicate delivery loses the race


def test_finish_is_exactly_once(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    now = utcnow()
    assert store.finish(job.id, attempt=1, status=Status.SUCCEEDED, now=now, result={"a": 1})
    assert not store.finish(job.id, attempt=1, status=Status.SUCCEEDED, now=now, result={"b": 2})
    assert not store.finish(job.id, attempt=1, status=Status.FAILED, now=now,
                            error_code="x", error_message="y")
    got = store.get(job.id)
    assert got.status is Status.SUCCEEDED and got.result == {"a": 1} and got.progress == 100
    assert got.finished_at is not None


def test_late_worker_cannot_overwrite_a_takeover(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job, owner="old")
    assert store.requeue(job.id, from_status=Status.RUNNING, attempt=1, now=utcnow())
    claim(store, job, owner="new")
    assert not store.finish(job.id, attempt=1, status=Status.SUCCEEDED, now=utcnow(),
                            result="late")
    assert store.renew_lease(job.id, attempt=1, owner="old",
                             lease_until=utcnow()) == (False, False)
    assert store.finish(job.id, attempt=2, status=Status.SUCCEEDED, now=utcnow(), result="ok")
    assert store.get(job.id).result == "ok"


def test_progress_checkpoint_and_usage(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    assert store.update_progress(job.id, attempt=1, progress=40, message="step 2",
                                 checkpoint={"market": "done"},
                                 usage_delta=Usage(10, 20, 0.5))
    assert store.update_progress(job.id, attempt=1, progress=-1, message="",
                                 usage_delta=Usage(1, 2, 0.25))
    got = store.get(job.id)
    assert (got.progress, got.message, got.checkpoint) == (40, "step 2", {"market": "done"})
    assert (got.usage.input_tokens, got.usage.output_tokens) == (11, 22)
    assert got.usage.cost_usd == pytest.approx(0.75)
    assert not store.update_progress(job.id, attempt=2, progress=50, message="stale")


def test_retry_refund_and_not_before(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    later = utcnow() + timedelta(seconds=60)
    assert store.finish(job.id, attempt=1, status=Status.RETRYING, now=utcnow(),
                        error_code="rate_limited", error_message="wait",
                        not_before=later, refund_attempt=True)
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.attempts == 0 and got.dispatched_at is None
    assert claim(store, job) is None  # not before its time
    now = later + timedelta(seconds=1)
    assert store.claim(job.id, owner="w", lease_until=now + timedelta(seconds=30),
                       now=now) is not None


def test_cancel_waiting_and_running(store) -> None:
    waiting, _ = store.create(make_job())
    got = store.request_cancel(waiting.id, tenant="acme", now=utcnow())
    assert got.status is Status.CANCELLED
    assert claim(store, waiting) is None  # a cancelled job never starts

    running, _ = store.create(make_job())
    claim(store, running)
    assert store.request_cancel(running.id, tenant="other", now=utcnow()) is None
    got = store.request_cancel(running.id, tenant="acme", now=utcnow())
    assert got.status is Status.RUNNING and got.cancel_requested
    assert store.renew_lease(running.id, attempt=1, owner="w1",
                             lease_until=utcnow()) == (True, True)
    store.finish(running.id, attempt=1, status=Status.SUCCEEDED, now=utcnow())
    assert store.request_cancel(running.id, tenant="acme", now=utcnow()) is None


def test_list_filters_and_paginates(store) -> None:
    ids = [store.create(make_job())[0].id for _ in range(7)]
    store.create(make_job(tenant="zeta"))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(tenant="acme", limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert store.list(tenant="acme", status=Status.FAILED).jobs == []
    assert len(store.list(tenant=None, limit=50).jobs) == 8


def test_expired_leases_and_undispatched(store) -> None:
    job, _ = store.create(make_job())
    never_sent, _ = store.create(make_job())
    store.mark_dispatched(job.id, utcnow())
    now = utcnow()
    store.claim(job.id, owner="dead", lease_until=now - timedelta(seconds=1), now=now)
    assert [j.id for j in store.expired_leases(utcnow())] == [job.id]
    later = utcnow() + timedelta(seconds=30)
    stale = store.undispatched(older_than=later, redispatch_before=later - timedelta(hours=1),
                               now=later)
    assert [j.id for j in stale] == [never_sent.id]


def test_purge_keeps_failed_longer(store) -> None:
    ok, _ = store.create(make_job())
    bad, _ = store.create(make_job())
    for job, status in ((ok, Status.SUCCEEDED), (bad, Status.FAILED)):
        claim(store, job)
        store.finish(job.id, attempt=1, status=status, now=utcnow() - timedelta(days=10))
    n = store.purge(finished_before=utcnow() - timedelta(days=7),
                    failed_before=utcnow() - timedelta(days=30))
    assert n == 1
    assert store.get(ok.id) is None and store.get(bad.id) is not None


def test_failed_job_can_be_replayed(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    store.finish(job.id, attempt=1, status=Status.FAILED, now=utcnow(), error_code="x",
                 error_message="boom")
    assert store.requeue(job.id, from_status=Status.FAILED, attempt=1, now=utcnow(),
                         reset_attempts=True)
    got = store.get(job.id)
    assert got.status is Status.QUEUED and got.attempts == 0 and got.error is None


def test_events_are_ordered(store) -> None:
    job, _ = store.create(make_job())
    store.add_event(JobEvent(job.id, "claimed", utcnow(), 1, {"worker": "w"}))
    kinds = [e.kind for e in store.events(job.id)]
    assert kinds == ["submitted", "claimed"]
    first = store.events(job.id)[0].id
    assert [e.kind for e in store.events(job.id, after_id=first)] == ["claimed"]


def test_count_by_status(store) -> None:
    store.create(make_job())
    counts = store.count_by_status()
    assert counts["queued"] == 1 and counts["succeeded"] == 0


def test_edges_outside_the_state_machine_are_refused(store) -> None:
    job, _ = store.create(make_job())
    with pytest.raises(ValueError, match="no transition from succeeded to queued"):
        store.requeue(job.id, from_status=Status.SUCCEEDED, attempt=0, now=utcnow())
    with pytest.raises(ValueError, match="no transition from running to running"):
        store.finish(job.id, attempt=0, status=Status.RUNNING, now=utcnow())
    assert store.get(job.id).status is Status.QUEUED  # nothing was written


def test_fail_waiting_ends_only_a_waiting_job(store) -> None:
    queued, _ = store.create(make_job())
    retrying, _ = store.create(make_job())
    running, _ = store.create(make_job())
    claim(store, retrying)
    store.finish(retrying.id, attempt=1, status=Status.RETRYING, now=utcnow(),
                 error_code="x", error_message="again")
    claim(store, running)
    now = utcnow()
    for job in (queued, retrying):
        assert store.fail_waiting(job.id, code="delivery_failed", message="boom", now=now)
        got = store.get(job.id)
        assert got.status is Status.FAILED and got.finished_at is not None
        assert (got.error_code, got.error_message) == ("delivery_failed", "boom")
        last = store.events(job.id)[-1]
        assert (last.kind, last.detail) == ("failed", {"code": "delivery_failed"})
    assert store.get(retrying.id).attempts == 1
    assert not store.fail_waiting(queued.id, code="delivery_failed", message="again", now=now)
    assert not store.fail_waiting(running.id, code="delivery_failed", message="boom", now=now)
    assert not store.fail_waiting("missing", code="delivery_failed", message="boom", now=now)
    assert store.get(running.id).status is Status.RUNNING


def test_expire_leases_of_one_owner(store) -> None:
    dead = [store.create(make_job())[0] for _ in range(2)]
    alive, _ = store.create(make_job())
    for job in dead:
        claim(store, job, owner="host/1")
    claim(store, alive, owner="host/2")
    now = utcnow()
    assert store.expired_leases(now) == []
    assert store.expire_leases_of("host/1", now=now) == 2
    assert sorted(j.id for j in store.expired_leases(now)) == sorted(j.id for j in dead)
    assert store.expire_leases_of("host/1", now=now) == 0  # already expired: left alone
    assert store.expire_leases_of("host/3", now=now) == 0
    got = store.get(alive.id)
    assert got.status is Status.RUNNING and got.lease_expires_at > now
