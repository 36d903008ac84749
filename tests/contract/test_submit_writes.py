"""What a new job writes, on SQLite and PostgreSQL alike: the row, its `submitted` event (with
the row's tenant, type and status), the deliveries of every webhook endpoint that wants it,
and the count of waiting jobs. PostgreSQL writes them in one statement, SQLite in one
transaction; a job with its own webhook, and a schedule's job, in the caller's transaction."""

from __future__ import annotations

import pytest

from tidegate.adapters.sql.events import EventLog
from tidegate.core.models import Job, new_job_id, utcnow
from tidegate.core.statuses import Priority, Status

from .conftest import endpoint

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


def make_job(tenant: str = "acme", **kw: object) -> Job:
    now = utcnow()
    return Job(id=new_job_id(), tenant=tenant, type="echo", input={"text": "hi"},
               priority=Priority.HIGH, created_at=now, updated_at=now,
               **kw)  # type: ignore[arg-type]


def test_the_row_its_event_and_its_deliveries(store, hooks) -> None:
    every = endpoint(hooks, ["*"])
    wants_it = endpoint(hooks, ["submitted", "succeeded"])
    endpoint(hooks, ["succeeded"])  # does not want it
    gone = endpoint(hooks, ["*"])
    assert hooks.remove_endpoint(tenant="acme", endpoint_id=gone)
    endpoint(hooks, ["*"], tenant="zeta")  # another tenant's
    woken: list[list[str]] = []
    store.on_events = woken.append

    job, created = store.create(make_job())

    assert created and store.get(job.id).status is Status.QUEUED
    [event] = EventLog(store.engine).for_job(job.id, after_id=0)
    assert (event["kind"], event["attempt"], event["tenant"], event["type"],
            event["status"], event["detail"]) == ("submitted", 0, "acme", "echo", "queued",
                                                  {"priority": "high"})
    deliveries = hooks.for_job(job.id)
    assert sorted(d["endpoint_id"] for d in deliveries) == sorted([every, wants_it])
    assert {(d["event_id"], d["kind"], d["status"]) for d in deliveries} == {
        (event["id"], "submitted", "pending")}
    assert woken == [[job.id]]  # streams are woken once it is committed
    store.fold_counts()
    assert store.count_waiting("acme") == 1 and store.count_waiting("zeta") == 0


def test_a_job_with_its_own_webhook(store, hooks) -> None:
    tenant_wide = endpoint(hooks, ["*"])
    job = make_job()
    job.webhook = {"id": job.id, "url": "http://127.0.0.1:9/own", "events": ["submitted"],
                   "secret": "own"}
    stored, created = store.create(job)
    assert created
    assert sorted(d["endpoint_id"] for d in hooks.for_job(stored.id)) == sorted(
        [tenant_wide, job.id])


def test_a_failed_insert_writes_nothing(store, hooks) -> None:
    endpoint(hooks, ["*"])
    first, _ = store.create(make_job(idempotency_key="k"))
    again, created = store.create(make_job(idempotency_key="k"))
    assert not created and again.id == first.id
    assert len(EventLog(store.engine).tail(0)) == 1
    assert hooks.counts().get("pending", 0) == 1
    store.fold_counts()
    assert store.count_waiting("acme") == 1
