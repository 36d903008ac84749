"""What a worker's claim and an attempt's outcome write, on SQLite and PostgreSQL alike: the
row, the event (with the row's tenant, type and status after it), the deliveries of every
webhook endpoint that wants that event, and the wake-up once committed. PostgreSQL writes each
in one statement, SQLite in one transaction; a lost race writes nothing at all."""

from __future__ import annotations

import pytest

from tidegate.adapters.sql.events import EventLog
from tidegate.adapters.sql.webhooks import WebhookStore
from tidegate.core.models import EventNote, Job, Usage, new_job_id, utcnow
from tidegate.core.statuses import Priority, Status

from .conftest import endpoint

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


def make_job(tenant: str = "acme") -> Job:
    now = utcnow()
    return Job(id=new_job_id(), tenant=tenant, type="echo", input={"text": "hi"},
               priority=Priority.MEDIUM, created_at=now, updated_at=now)


def events(store, job_id: str) -> list[tuple]:
    return [(e["kind"], e["attempt"], e["tenant"], e["type"], e["status"], e["detail"])
            for e in EventLog(store.engine).for_job(job_id, after_id=0)]


def delivered_kinds(hooks: WebhookStore, job_id: str, endpoint_id: str) -> list[str]:
    return sorted(d["kind"] for d in hooks.for_job(job_id) if d["endpoint_id"] == endpoint_id)


def test_a_claim_and_a_success_with_its_last_report(store, hooks) -> None:
    every = endpoint(hooks, ["*"])
    claims = endpoint(hooks, ["claimed"])
    ends = endpoint(hooks, ["succeeded", "progress"])
    endpoint(hooks, ["*"], tenant="zeta")  # another tenant's
    job, _ = store.create(make_job())
    woken: list[list[str]] = []
    store.on_events = woken.append

    claimed = store.claim(job.id, owner="w1", lease_s=30)
    assert claimed is not None and claimed.status is Status.RUNNING and claimed.attempts == 1
    assert claimed.input == {"text": "hi"} and claimed.lease_owner == "w1"
    assert store.claim(job.id, owner="w2", lease_s=30) is None  # running: not claimable
    written = store.finish(job.id, attempt=1, status=Status.SUCCEEDED, result={"n": 1},
                           usage_delta=Usage(10, 2, 300), progress=(40, "step 1/1"))

    assert written is Status.SUCCEEDED
    got = store.get(job.id)
    assert (got.status, got.result, got.progress, got.message) == (
        Status.SUCCEEDED, {"n": 1}, 100, "step 1/1")
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.cost_nanos) == (
        10, 2, 300)
    assert got.finished_at is not None and got.lease_owner is None
    assert events(store, job.id)[1:] == [
        ("claimed", 1, "acme", "echo", "running", {"worker": "w1"}),
        ("progress", 1, "acme", "echo", "running", {"percent": 40, "message": "step 1/1"}),
        ("succeeded", 1, "acme", "echo", "succeeded", {})]
    assert delivered_kinds(hooks, job.id, every) == sorted(
        ["submitted", "claimed", "progress", "succeeded"])
    assert delivered_kinds(hooks, job.id, claims) == ["claimed"]
    assert delivered_kinds(hooks, job.id, ends) == ["progress", "succeeded"]
    assert woken and all(set(ids) == {job.id} for ids in woken)  # once committed
    # Exactly once: a second outcome for the same attempt writes nothing.
    assert store.finish(job.id, attempt=1, status=Status.FAILED, error_code="x",
                        error_message="y") is None
    assert len(events(store, job.id)) == 4


def test_a_failure_event_carries_its_message_and_a_lost_race_writes_nothing(store,
                                                                           hooks) -> None:
    job, _ = store.create(make_job())
    store.claim(job.id, owner="w1", lease_s=30)
    assert store.finish(job.id, attempt=2, status=Status.FAILED, error_code="c",
                        error_message="m", progress=(5, "x")) is None  # not its attempt
    assert store.get(job.id).status is Status.RUNNING
    assert [e[0] for e in events(store, job.id)] == ["submitted", "claimed"]
    assert store.finish(job.id, attempt=1, status=Status.FAILED, error_code="bad_input",
                        error_message="no such startup",
                        note=EventNote("failed", {"code": "bad_input"})) is Status.FAILED
    assert events(store, job.id)[-1] == (
        "failed", 1, "acme", "echo", "failed", {"code": "bad_input",
                                                "message": "no such startup"})


def test_a_retry_of_a_cancel_requested_row_is_written_and_noted_as_cancelled(store,
                                                                            hooks) -> None:
    cancels = endpoint(hooks, ["cancelled"])
    job, _ = store.create(make_job())
    store.claim(job.id, owner="w1", lease_s=30)
    store.request_cancel(job.id, tenant=None)
    written = store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="handler_error",
                           error_message="boom", delay_s=5.0, refund_attempt=True,
                           quota_wait="start", note=EventNote("retrying", {"delay_s": 5.0}))
    assert written is Status.CANCELLED
    got = store.get(job.id)
    assert (got.status, got.error_code, got.not_before, got.attempts) == (
        Status.CANCELLED, "cancelled", None, 0)
    assert events(store, job.id)[-1] == ("cancelled", 1, "acme", "echo", "cancelled",
                                         {"code": "cancelled"})
    assert delivered_kinds(hooks, job.id, cancels) == ["cancelled"]


def test_a_retry_waits_its_delay_on_the_database_clock(store) -> None:
    job, _ = store.create(make_job())
    store.claim(job.id, owner="w1", lease_s=30)
    before = store.now()
    assert store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="e",
                        error_message="m", delay_s=60.0,
                        note=EventNote("retrying", {"delay_s": 60.0})) is Status.RETRYING
    got = store.get(job.id)
    assert got.dispatched_at is None and got.not_before is not None
    assert 59 <= (got.not_before - before).total_seconds() <= 70
    assert store.claim(job.id, owner="w1", lease_s=30) is None  # not due yet
    assert events(store, job.id)[-1] == ("retrying", 1, "acme", "echo", "retrying",
                                         {"delay_s": 60.0})
