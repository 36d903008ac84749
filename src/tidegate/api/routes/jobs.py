"""/v1/jobs: submit, read, list, cancel, replay (the event stream: routes/events.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from ...adapters.metrics import count_submission
from ...core.events import DEFAULT_WEBHOOK_KINDS
from ...core.statuses import Status
from ...webhooks import new_secret
from ..deps import ContainerDep, Reader, ServiceDep, Submitter
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    SUBMIT_LIMIT_ERRORS,
    DeadlineErrorBody,
    EtaPublic,
    JobAccepted,
    JobCreate,
    JobEventPublic,
    JobList,
    JobPublic,
    WarningPublic,
    WebhookCreated,
    error_responses,
)
from . import webhooks

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTH_ERRORS)

_ERRORS = error_responses(**{"404": "no such job for this tenant",
                             "422": "unknown job type, invalid input or invalid cursor",
                             "503": "database unavailable; nothing was accepted"})


_UNMEETABLE: dict[int | str, dict[str, Any]] = {409: {"model": DeadlineErrorBody,
                     "description": "`deadline_unmeetable`: the estimate misses the deadline "
                                    "and `on_deadline_unmeetable` is `refuse`"}}


@router.post("", status_code=202, response_model=JobAccepted,
             responses={**_ERRORS, **BODY_ERRORS, **SUBMIT_LIMIT_ERRORS, **_UNMEETABLE})
def submit_job(body: JobCreate, service: ServiceDep, container: ContainerDep,
               caller: Submitter,
               idempotency_key: Annotated[str | None, Header()] = None) -> JobAccepted:
    """Submit a job. 202 means the job row is committed: it will run, or end with an error.

    The same `Idempotency-Key` from the same tenant returns the job created first. With a
    `webhook`, the answer holds its signing secret (only the first time). The tenant's limits
    apply: allowed priorities (403), submissions per minute and waiting jobs (429
    `rate_limited` with `Retry-After`), budgets (429 `budget_exceeded`). The answer carries
    the first `eta`; with a deadline it misses, the job is refused (409 `deadline_unmeetable`,
    `on_deadline_unmeetable: refuse`) or accepted with a `warnings` entry (`warn`, the
    default).
    """
    hook = webhooks.checked(body.webhook, container) if body.webhook else None
    secret = new_secret() if hook else None
    job, created = service.submit(tenant=caller.tenant, type=body.type, input=body.input,
                                  priority=body.priority, metadata=body.metadata,
                                  idempotency_key=idempotency_key,
                                  deadline_s=body.deadline_s, deadline_at=body.deadline_at,
                                  expires_at=body.expires_at,
                                  on_deadline_unmeetable=body.on_deadline_unmeetable,
                                  webhook=hook, webhook_secret=secret)
    count_submission(job, created)
    shown = None
    if hook:
        shown = WebhookCreated(id=job.id, url=hook["url"], job_id=job.id,
                               events=hook["events"] or list(DEFAULT_WEBHOOK_KINDS),
                               created_at=job.created_at, secret=secret if created else None)
    return JobAccepted(job_id=job.id, status=job.status.value, type=job.type,
                       priority=job.priority.value, created_at=job.created_at,
                       deadline_at=job.deadline_at, eta=EtaPublic.of(job.eta),
                       warnings=[WarningPublic(**w) for w in job.warnings], webhook=shown)


@router.get("", response_model=JobList,
            responses=error_responses(**{"422": "invalid status, type, limit or cursor"}))
def list_jobs(service: ServiceDep, caller: Reader,
              status: Annotated[Status | None, Query(
                  description="e.g. failed: the dead letters")] = None,
              type: str | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              cursor: Annotated[str | None, Query(
                  description="`next_cursor` of the previous page, exactly as returned")] = None,
              ) -> JobList:
    """List the caller's jobs (an admin key: every tenant's), newest first; pass
    `next_cursor` back for the next page."""
    page = service.list(tenant=caller.owner, status=status and status.value, type=type,
                        limit=limit,
                        cursor=cursor)
    return JobList(jobs=[JobPublic.of(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=_ERRORS)
def get_job(job_id: str, service: ServiceDep, caller: Reader) -> JobPublic:
    """The job's status, progress, result or error, attempts and usage; while it waits, its
    `eta`."""
    job = service.get(job_id, tenant=caller.owner)
    return JobPublic.of(job, service.eta_of(job))


@router.delete("/{job_id}", response_model=JobPublic,
               responses={**_ERRORS, 409: {"description": "the job already finished"}})
def cancel_job(job_id: str, service: ServiceDep, caller: Submitter) -> JobPublic:
    """Cancel: a waiting job never starts; a running job stops at its next checkpoint."""
    return JobPublic.of(service.cancel(job_id, tenant=caller.owner))


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic,
             responses={**_ERRORS, 409: {"description": "the job is not failed"}})
def retry_job(job_id: str, service: ServiceDep, caller: Submitter) -> JobPublic:
    """Replay a failed (dead-lettered) job with a fresh attempt budget."""
    return JobPublic.of(service.retry(job_id, tenant=caller.owner))


@router.get("/{job_id}/history", response_model=list[JobEventPublic], responses=_ERRORS)
def job_history(job_id: str, service: ServiceDep, caller: Reader) -> list[JobEventPublic]:
    """Everything that happened to the job: submitted, claimed, retrying, succeeded..."""
    service.get(job_id, tenant=caller.owner)
    return [JobEventPublic(id=e.id or 0, kind=e.kind, attempt=e.attempt, at=e.at,
                           detail=e.detail) for e in service.store.events(job_id)]
