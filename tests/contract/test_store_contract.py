"""One body, every JobStore: in-memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest

from tidegate.core.models import EventNote, Job, Usage, new_job_id, utcnow
from tidegate.core.statuses import Priority, Status


def make_job(tenant: str = "acme", key: str | None = None, **kw: object) -> Job:
    now = utcnow()
    kw.setdefault("priority", Priority.MEDIUM)
    return Job(id=new_job_id(), tenant=tenant, type="echo", input={"text": "hi"},
               idempotency_key=key, created_at=now, updated_at=now,
               **kw)  # type: ignore[arg-type]


def claim(store, job: Job, owner: str = "w1", lease_s: float = 30):
    return store.claim(job.id, owner=owner, lease_s=lease_s)


def set_columns(store, job_id: str, **values: object) -> None:
    """Put a row in a state today's transitions cannot produce (rows from older versions)."""
    if hasattr(store, "_jobs"):
        for k, v in values.items():
            setattr(store._jobs[job_id], k, v)
        return
    from tidegate.adapters.sql.tables import jobs

    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


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
    assert store.finish(job.id, attempt=1, status=Status.SUCCEEDED,
                        result={"a": 1}) is Status.SUCCEEDED
    assert not store.finish(job.id, attempt=1, status=Status.SUCCEEDED, result={"b": 2})
    assert not store.finish(job.id, attempt=1, status=Status.FAILED,
                            error_code="x", error_message="y")
    got = store.get(job.id)
    assert got.status is Status.SUCCEEDED and got.result == {"a": 1} and got.progress == 100
    assert got.finished_at is not None


def test_late_worker_cannot_overwrite_a_takeover(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job, owner="old")
    assert store.requeue(job.id, from_status=Status.RUNNING, attempt=1)
    claim(store, job, owner="new")
    assert not store.finish(job.id, attempt=1, status=Status.SUCCEEDED, result="late")
    assert store.renew_lease(job.id, attempt=1, owner="old", lease_s=30) == (False, False)
    assert store.finish(job.id, attempt=2, status=Status.SUCCEEDED, result="ok")
    assert store.get(job.id).result == "ok"


def test_progress_checkpoint_and_usage(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    assert store.update_progress(job.id, attempt=1, progress=40, message="step 2",
                                 checkpoint={"market": "done"},
                                 usage_delta=Usage(10, 20, 500_000_001))
    assert store.update_progress(job.id, attempt=1, progress=-1, message="",
                                 usage_delta=Usage(1, 2, 250_000_000))
    got = store.get(job.id)
    assert (got.progress, got.message, got.checkpoint) == (40, "step 2", {"market": "done"})
    assert (got.usage.input_tokens, got.usage.output_tokens) == (11, 22)
    assert got.usage.cost_usd == Decimal("0.750000001")  # exact, to the nano-dollar
    assert not got.usage.unpriced
    assert not store.update_progress(job.id, attempt=2, progress=50, message="stale")


def test_retry_refund_and_not_before(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    assert store.finish(job.id, attempt=1, status=Status.RETRYING,
                        error_code="rate_limited", error_message="wait",
                        delay_s=60, refund_attempt=True) is Status.RETRYING
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.attempts == 0 and got.dispatched_at is None
    assert got.not_before > store.now() + timedelta(seconds=55)
    assert claim(store, job) is None  # not before its time
    set_columns(store, job.id, not_before=store.now() - timedelta(seconds=1))
    assert claim(store, job) is not None


def test_cancel_waiting_and_running(store) -> None:
    waiting, _ = store.create(make_job())
    got = store.request_cancel(waiting.id, tenant="acme")
    assert got.status is Status.CANCELLED
    assert claim(store, waiting) is None  # a cancelled job never starts

    running, _ = store.create(make_job())
    claim(store, running)
    assert store.request_cancel(running.id, tenant="other") is None
    got = store.request_cancel(running.id, tenant="acme")
    assert got.status is Status.RUNNING and got.cancel_requested
    assert store.renew_lease(running.id, attempt=1, owner="w1", lease_s=30) == (True, True)
    store.finish(running.id, attempt=1, status=Status.SUCCEEDED)
    assert store.request_cancel(running.id, tenant="acme") is None


def test_list_filters_and_paginates(store) -> None:
    ids = [store.create(make_job())[0].id for _ in range(7)]
    store.create(make_job(tenant="zeta"))
    seen: list[str] = []
    after = None
    while True:
        page = store.list(tenant="acme", limit=3, after=after)
        seen += [j.id for j in page.jobs]
        if page.next_after is None:
            break
        assert page.next_after == (page.jobs[-1].created_at, page.jobs[-1].id)
        after = page.next_after
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert store.list(tenant="acme", status=Status.FAILED).jobs == []
    assert len(store.list(tenant=None, limit=50).jobs) == 8


def test_expired_leases_and_undispatched(store) -> None:
    job, _ = store.create(make_job())
    never_sent, _ = store.create(make_job())
    assert store.mark_dispatched(job.id, attempt=0, version=job.updated_at)
    assert store.claim(job.id, owner="dead", lease_s=-1)  # a lease that already ran out
    assert [j.id for j in store.expired_leases()] == [job.id]
    stale = store.undispatched(grace_s=-30, redispatch_after_s=3600)
    assert [j.id for j in stale] == [never_sent.id]
    assert store.undispatched(grace_s=30, redispatch_after_s=3600) == []


def test_overdue_is_per_queue_and_a_queue_without_a_cutoff_waits_long(store) -> None:
    """A cutoff per queue (the sweep's delivery frontier) decides which sent jobs are overdue;
    a queue without one keeps the long wait."""
    high = [store.create(make_job(priority=Priority.HIGH))[0] for _ in range(2)]
    low, _ = store.create(make_job(priority=Priority.LOW))
    for job in (*high, low):
        assert store.mark_dispatched(job.id, attempt=0, version=job.updated_at)
    after = store.now() + timedelta(seconds=1)
    assert store.undispatched(grace_s=30, redispatch_after_s=3600) == []
    overdue = store.undispatched(grace_s=30, redispatch_after_s=3600,
                                 overdue_before={"high": after})
    assert sorted(j.id for j in overdue) == sorted(j.id for j in high)
    assert store.undispatched(grace_s=30, redispatch_after_s=3600,
                              overdue_before={"high": after - timedelta(seconds=60)}) == []
    # the long wait on the queues without a cutoff (every sent job here is older than -1 s)
    rest = store.undispatched(grace_s=30, redispatch_after_s=-1,
                              overdue_before={"high": after - timedelta(seconds=60)})
    assert [j.id for j in rest] == [low.id]
    assert len(store.undispatched(grace_s=30, redispatch_after_s=3600, limit=1,
                                  overdue_before={"high": after, "low": after})) == 1


def test_purge_keeps_failed_longer(store) -> None:
    ok, _ = store.create(make_job())
    bad, _ = store.create(make_job())
    for job, status in ((ok, Status.SUCCEEDED), (bad, Status.FAILED)):
        claim(store, job)
        store.finish(job.id, attempt=1, status=status)
        set_columns(store, job.id, finished_at=utcnow() - timedelta(days=10))
    n = store.purge(finished_before=utcnow() - timedelta(days=7),
                    failed_before=utcnow() - timedelta(days=30))
    assert n == 1
    assert store.get(ok.id) is None and store.get(bad.id) is not None


def test_a_deadline_is_stored_and_read_back(store) -> None:
    at = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    job, _ = store.create(make_job(expires_at=at))
    got = store.get(job.id)
    assert (got.deadline_at, got.expires_at) == (at, at)
    assert store.get(store.create(make_job())[0].id).deadline_at is None


def test_failed_job_can_be_replayed(store) -> None:
    job, _ = store.create(make_job(expires_at=utcnow() + timedelta(hours=1)))
    claim(store, job)
    store.request_cancel(job.id, tenant=None)  # a cancel that lost to the failure
    store.finish(job.id, attempt=1, status=Status.FAILED, error_code="x", error_message="boom")
    set_columns(store, job.id, expires_at=store.now() - timedelta(seconds=1))
    row = store.requeue(job.id, from_status=Status.FAILED, attempt=1, reset_attempts=True,
                        note=EventNote("replayed"))
    assert row.status is Status.QUEUED and row.attempts == 0 and row.error is None
    got = store.get(job.id)
    assert got.status is Status.QUEUED and not got.cancel_requested and got.expires_at is None
    assert got.deadline_at is None  # a replay is a new request to run it: no deadline
    assert claim(store, job) is not None  # a replay can run: not stuck behind the old cancel
    assert [e.kind for e in store.events(job.id)][-2:] == ["replayed", "claimed"]


def test_events_are_ordered(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    kinds = [e.kind for e in store.events(job.id)]
    assert kinds == ["submitted", "claimed"]
    first = store.events(job.id)[0].id
    assert [e.kind for e in store.events(job.id, after_id=first)] == ["claimed"]


def test_count_by_status(store) -> None:
    store.create(make_job())
    counts = store.count_by_status()
    assert counts["queued"] == 1 and counts["succeeded"] == 0


def test_counts_follow_every_transition_and_the_purge(store) -> None:
    """The counts /v1/queues and /metrics show stay equal to the jobs themselves through
    submits, claims, ends, cancels, requeues, a purge and the sweep's fold."""
    ids: list[str] = []
    for tenant in ("acme", "zeta", "acme", "acme", "zeta", "acme", "zeta", "acme"):
        ids.append(store.create(make_job(tenant=tenant))[0].id)
    store.create(make_job(tenant="acme", key="k"))
    store.create(make_job(tenant="acme", key="k"))  # the same job again: no new count
    for job_id in ids[:6]:
        store.claim(job_id, owner="w", lease_s=30)
    store.finish(ids[0], attempt=1, status=Status.SUCCEEDED, result={})
    store.finish(ids[1], attempt=1, status=Status.FAILED, error_code="x", error_message="y")
    store.fold_counts()
    store.requeue(ids[2], from_status=Status.RUNNING, attempt=1)
    store.request_cancel(ids[6], tenant=None)  # a queued job: cancelled at once
    store.finish(ids[3], attempt=1, status=Status.SUCCEEDED, result={})
    set_columns(store, ids[3], finished_at=utcnow() - timedelta(days=30))
    assert store.purge(finished_before=utcnow() - timedelta(days=1),
                       failed_before=utcnow() - timedelta(days=1)) == 1

    def truth(tenant: str | None) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for t in ("acme", "zeta"):
            if tenant in (None, t):
                for job in store.list(tenant=t, limit=100).jobs:
                    counts[job.status.value] += 1
        return counts

    for _ in range(2):
        for tenant in ("acme", "zeta", None):
            assert store.count_by_status(tenant=tenant) == truth(tenant), tenant
        assert store.count_waiting("acme") == truth("acme")["queued"] + truth("acme")[
            "retrying"]
        assert store.count_running("acme") == truth("acme")["running"]
        store.fold_counts()  # the same after the deltas are folded


def test_edges_outside_the_state_machine_are_refused(store) -> None:
    job, _ = store.create(make_job())
    with pytest.raises(ValueError, match="no transition from succeeded to queued"):
        store.requeue(job.id, from_status=Status.SUCCEEDED, attempt=0)
    with pytest.raises(ValueError, match="no transition from running to running"):
        store.finish(job.id, attempt=0, status=Status.RUNNING)
    assert store.get(job.id).status is Status.QUEUED  # nothing was written


def test_late_usage_is_added_whatever_the_status(store) -> None:
    """A call abandoned by cancel, shutdown or a lost lease is still billed: when it returns,
    its usage is added to the job, finished or not, and shown apart as late."""
    job, _ = store.create(make_job())
    claim(store, job)
    assert store.update_progress(job.id, attempt=1, progress=10, message="",
                                 usage_delta=Usage(100, 10, 1_000))
    assert store.finish(job.id, attempt=1, status=Status.CANCELLED,
                        error_code="cancelled", error_message="cancelled on request")
    assert store.add_late_usage(job.id, Usage(7, 3, 25))
    assert store.add_late_usage(job.id, Usage(1, 1, 0, unpriced=True))
    got = store.get(job.id)
    assert got.status is Status.CANCELLED
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.cost_nanos) == (
        108, 14, 1_025)
    assert (got.late_usage.input_tokens, got.late_usage.output_tokens,
            got.late_usage.cost_nanos) == (8, 4, 25)
    assert got.usage.unpriced and got.usage.cost_usd is None  # never a false total
    assert not store.add_late_usage("no-such-job", Usage(1, 1, 1))


def test_the_request_fingerprint_comes_back_with_the_first_job(store) -> None:
    first, _ = store.create(make_job(key="k1", request_fingerprint="a" * 64))
    again, created = store.create(make_job(key="k1", request_fingerprint="b" * 64))
    assert not created and again.id == first.id
    assert again.request_fingerprint == "a" * 64  # the service compares; the store keeps


def test_a_job_that_cannot_be_sent_back_reads_as_unreadable(store) -> None:
    """The store refuses nothing (the service checks at submit), but never hands out a job
    whose text cannot be encoded: one bad row must not fail a read of it or of its page."""
    if store.__class__.__name__ == "SqlJobStore" and store.engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL refuses to store it at all (the service refuses it first); "
                    "tests/integration/test_api_input.py writes bad rows there by hand")
    ok, _ = store.create(make_job())
    bad, _ = store.create(make_job(metadata={"x": "\ud800"}))
    got = store.get(bad.id)
    assert got.error == {"code": "unreadable", "message": got.error_message}
    assert got.metadata == {} and got.status is Status.QUEUED and got.tenant == "acme"
    assert store.get(ok.id).error is None
    listed = {j.id: j for j in store.list(tenant="acme").jobs}
    assert listed.keys() == {ok.id, bad.id}
    assert listed[bad.id].error_code == "unreadable" and listed[ok.id].error_code is None


@pytest.mark.parametrize("result", [0.30000000000000004, 123, "123", None, [1.5e-7],
                                    {"x": 0.1 + 0.2, "n": 10**20}])
def test_results_read_back_exactly(store, result) -> None:
    job, _ = store.create(make_job(metadata={"f": 0.1 + 0.2}))
    claim(store, job)
    store.finish(job.id, attempt=1, status=Status.SUCCEEDED, result=result)
    got = store.get(job.id)
    assert got.result == result and type(got.result) is type(result)
    assert got.metadata == {"f": 0.1 + 0.2} and got.error_code is None
    assert store.list(tenant="acme").jobs[0].result == result


# -- a row never waits for nothing -----------------------------------------------------------
@pytest.mark.parametrize("status", [Status.RETRYING])
def test_parking_a_cancel_requested_row_cancels_it_in_the_same_update(store, status) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    store.request_cancel(job.id, tenant="acme")  # lands after the worker last looked
    written = store.finish(job.id, attempt=1, status=status, error_code="waiting_for_quota",
                           error_message="lane x is at its rpm limit", delay_s=5,
                           refund_attempt=True)
    assert written is Status.CANCELLED
    got = store.get(job.id)
    assert got.status is Status.CANCELLED and got.error_code == "cancelled"
    assert got.finished_at is not None and got.not_before is None
    assert [(e.kind, e.detail) for e in store.events(job.id)][-1] == (
        "cancelled", {"code": "cancelled"})


def test_requeue_of_a_cancel_requested_row_cancels_it(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job, lease_s=-1)
    store.request_cancel(job.id, tenant="acme")
    row = store.requeue(job.id, from_status=Status.RUNNING, attempt=1, lease_expired=True)
    assert row.status is Status.CANCELLED and store.get(job.id).status is Status.CANCELLED


def test_parking_past_the_deadline_fails_expired(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    set_columns(store, job.id, expires_at=store.now() - timedelta(seconds=1))
    assert store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="retry",
                        error_message="again", delay_s=1) is Status.FAILED
    got = store.get(job.id)
    assert (got.status, got.error_code) == (Status.FAILED, "expired")


def test_claim_refuses_a_job_past_its_deadline_and_close_waiting_ends_it(store) -> None:
    late, _ = store.create(make_job(expires_at=utcnow() - timedelta(seconds=1)))
    flagged, _ = store.create(make_job())
    fine, _ = store.create(make_job(expires_at=utcnow() + timedelta(hours=1)))
    set_columns(store, flagged.id, cancel_requested=True)
    assert claim(store, late) is None and claim(store, flagged) is None
    assert sorted(store.close_waiting()) == sorted(
        [(late.id, Status.FAILED), (flagged.id, Status.CANCELLED)])
    assert store.get(late.id).error_code == "expired"
    assert store.events(late.id)[-1].kind == "failed"
    assert store.events(flagged.id)[-1].kind == "cancelled"
    assert store.close_waiting() == []
    assert store.get(fine.id).status is Status.QUEUED and claim(store, fine) is not None


def test_sweep_writes_hold_only_while_the_lease_is_expired(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job, lease_s=-1)
    assert [j.id for j in store.expired_leases()] == [job.id]
    assert store.renew_lease(job.id, attempt=1, owner="w1", lease_s=30) == (True, False)
    assert store.requeue(job.id, from_status=Status.RUNNING, attempt=1,
                         lease_expired=True) is None
    assert store.finish(job.id, attempt=1, status=Status.FAILED, error_code="worker_lost",
                        error_message="gone", lease_expired=True) is None
    assert store.get(job.id).status is Status.RUNNING


def test_mark_dispatched_only_for_the_row_it_sent(store) -> None:
    job, _ = store.create(make_job())
    assert claim(store, job) is not None  # a worker took it before the send was recorded
    assert not store.mark_dispatched(job.id, attempt=0, version=job.updated_at)
    store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="w",
                 error_message="w", delay_s=0, refund_attempt=True)  # same attempt number
    assert not store.mark_dispatched(job.id, attempt=0, version=job.updated_at)
    parked = store.get(job.id)
    assert parked.dispatched_at is None  # the worker's reset stands: the sweep sees it
    assert store.mark_dispatched(job.id, attempt=0, version=parked.updated_at)
    assert store.get(job.id).dispatched_at is not None


def test_each_transition_writes_its_event(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job, owner="w9")
    store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="c", error_message="m",
                 delay_s=0, note=EventNote("retrying", {"delay_s": 0}))
    claim(store, job)
    store.finish(job.id, attempt=2, status=Status.SUCCEEDED, result=1)
    events = store.events(job.id)
    assert [(e.kind, e.attempt) for e in events] == [
        ("submitted", 0), ("claimed", 1), ("retrying", 1), ("claimed", 2), ("succeeded", 2)]
    assert events[1].detail == {"worker": "w9"} and events[2].detail == {"delay_s": 0}


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_an_event_that_cannot_be_written_undoes_its_change(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for bad JSON
        store.finish(job.id, attempt=1, status=Status.SUCCEEDED, result=1,
                     note=EventNote("succeeded", {"bad": object()}))
    assert store.get(job.id).status is Status.RUNNING  # one transaction: nothing written


def test_fail_waiting_ends_only_a_waiting_job(store) -> None:
    queued, _ = store.create(make_job())
    retrying, _ = store.create(make_job())
    running, _ = store.create(make_job())
    claim(store, retrying)
    store.finish(retrying.id, attempt=1, status=Status.RETRYING,
                 error_code="x", error_message="again")
    claim(store, running)
    for job in (queued, retrying):
        assert store.fail_waiting(job.id, code="delivery_failed", message="boom")
        got = store.get(job.id)
        assert got.status is Status.FAILED and got.finished_at is not None
        assert (got.error_code, got.error_message) == ("delivery_failed", "boom")
        last = store.events(job.id)[-1]
        assert (last.kind, last.detail) == ("failed", {"code": "delivery_failed",
                                                       "message": "boom"})
    assert store.get(retrying.id).attempts == 1
    assert not store.fail_waiting(queued.id, code="delivery_failed", message="again")
    assert not store.fail_waiting(running.id, code="delivery_failed", message="boom")
    assert not store.fail_waiting("missing", code="delivery_failed", message="boom")
    assert store.get(running.id).status is Status.RUNNING


def test_expire_leases_of_one_owner(store) -> None:
    dead = [store.create(make_job())[0] for _ in range(2)]
    alive, _ = store.create(make_job())
    for job in dead:
        claim(store, job, owner="host/1")
    claim(store, alive, owner="host/2")
    assert store.expired_leases() == []
    assert store.expire_leases_of("host/1") == 2
    assert sorted(j.id for j in store.expired_leases()) == sorted(j.id for j in dead)
    assert store.expire_leases_of("host/1") == 0  # already expired: left alone
    assert store.expire_leases_of("host/3") == 0
    got = store.get(alive.id)
    assert got.status is Status.RUNNING and got.lease_expires_at > store.now()


def test_concurrent_transitions_keep_the_counts_exact_and_never_deadlock(pg_store) -> None:
    """16 threads move 160 jobs of two tenants through claim, requeue and finish while the
    sweep's fold runs beside them: no transition waits on another's count, and the counts end
    equal to the rows."""
    store = pg_store
    ids = [store.create(make_job(tenant=("acme", "zeta")[i % 2]))[0].id for i in range(160)]

    def life(job_id: str) -> None:
        store.claim(job_id, owner="w", lease_s=30)
        store.requeue(job_id, from_status=Status.RUNNING, attempt=1)
        store.claim(job_id, owner="w", lease_s=30)
        store.finish(job_id, attempt=2, status=Status.SUCCEEDED, result={})

    with ThreadPoolExecutor(16) as pool:
        folds = [pool.submit(store.fold_counts) for _ in range(10)]
        list(pool.map(life, ids))
        for fold in folds:
            fold.result()
    assert store.count_by_status(tenant="acme")["succeeded"] == 80
    assert store.count_by_status()["succeeded"] == 160
    assert sum(store.count_by_status().values()) == 160
    store.fold_counts()
    assert store.count_by_status() == {**{s.value: 0 for s in Status}, "succeeded": 160}
