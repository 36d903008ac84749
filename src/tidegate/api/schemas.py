"""Request and response bodies, split by purpose (the HTTP contract in DESIGN.md).

The Python client (``tidegate.client``) parses answers with these same models, so this module
imports only pydantic and the framework-free core: never FastAPI, SQLAlchemy or Celery.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.models import Job
from ..core.statuses import CELERY_STATES
from .params import NO_NUL_REGEX, WEBHOOK_URL_REGEX


class WebhookSpec(BaseModel):
    url: str = Field(max_length=2000, pattern=WEBHOOK_URL_REGEX, description="https:// "
                     "(http:// too in dev); it must resolve to a public address")
    events: list[str] | None = Field(default=None, max_length=20, description="event kinds "
                                     "to send, or `[\"*\"]` for all; default: succeeded, "
                                     "failed, cancelled")


class WebhookCreated(BaseModel):
    id: str
    url: str
    events: list[str]
    job_id: str | None = None
    created_at: datetime
    secret: str | None = Field(default=None, description="`whsec_...`: shown only in the "
                               "answer that created or rotated it; verify signatures with it")


class DeliveryPublic(BaseModel):
    delivery_id: str = Field(description="the `Tidegate-Delivery` header: the same on retries")
    event_id: int
    kind: str
    endpoint_id: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    response_status: int | None
    last_error: str | None
    created_at: datetime


class JobCreate(BaseModel):
    type: str = Field(min_length=1, max_length=100, description="a registered job type, e.g. `echo` or `startup_report`")
    input: dict[str, Any] = Field(default_factory=dict, description="validated by the job type")
    priority: Literal["high", "medium", "low"] | None = Field(
        default=None, description="overrides the job type's default queue")
    metadata: dict[str, Any] | None = Field(default=None, description="echoed back, not used")
    deadline_s: float | None = Field(default=None, gt=0, le=366 * 86400, description="the "
                                     "job's deadline in seconds from now: past it the job "
                                     "fails with `expired` instead of waiting; give at most "
                                     "one of `deadline_s`, `deadline_at`, `expires_at`")
    deadline_at: datetime | None = Field(default=None, description="the same deadline as an "
                                         "RFC 3339 time with a zone")
    expires_at: datetime | None = Field(default=None, description="the older name of "
                                        "`deadline_at`",
                                        json_schema_extra={"deprecated": True})
    on_deadline_unmeetable: Literal["refuse", "warn"] = Field(
        default="warn", description="when the first estimate (`eta.finish_at`) is after the "
        "deadline: `refuse` answers 409 `deadline_unmeetable` and stores nothing; `warn` "
        "accepts the job with a `deadline_unmeetable` entry in `warnings`")
    webhook: WebhookSpec | None = Field(default=None, description="signed callbacks for this "
                                        "job's events (beside the tenant's default webhooks)")


class LateUsagePublic(BaseModel):
    """Calls that returned after the job stopped waiting for them (cancel, shutdown, time
    limit, lost lease): the provider billed them, so they are in the totals too."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None


class UsagePublic(BaseModel):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="USD, to the nano-dollar; null when a model "
                                   "used has no price in the settings (`unpriced`)")
    unpriced: bool = False
    late: LateUsagePublic

    @classmethod
    def of(cls, job: Job) -> UsagePublic:
        u, late = job.usage, job.late_usage
        return cls(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                   cost_usd=u.public_cost_usd(), unpriced=u.unpriced,
                   late=LateUsagePublic(input_tokens=late.input_tokens,
                                        output_tokens=late.output_tokens,
                                        cost_usd=None if u.unpriced
                                        else late.public_cost_usd()))


class ErrorPublic(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorPublic


class LimitErrorPublic(ErrorPublic):
    remaining: dict[str, Any] | None = Field(
        default=None, description="`budget_exceeded`: what is left of each budget "
        "(`daily_tokens`, `monthly_tokens`, `daily_usd`, `monthly_usd`)")
    resets_at: datetime | None = Field(default=None, description="`budget_exceeded`: when "
                                       "the exhausted budget starts again (UTC midnight)")


class LimitErrorBody(BaseModel):
    """A tenant limit (429): `rate_limited` (with `Retry-After`) or `budget_exceeded`."""

    error: LimitErrorPublic


def error_responses(**described: str) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for error statuses, e.g. ``error_responses(**{"404": "no such job"})``;
    every one has the :class:`ErrorBody` shape (429: :class:`LimitErrorBody`)."""
    return {int(status): {"model": LimitErrorBody if status == "429" else ErrorBody,
                          "description": text}
            for status, text in described.items()}


# What any route behind an API key can answer, and any route that reads a JSON body.
AUTH_ERRORS = error_responses(**{"401": "missing, invalid, expired or revoked API key",
                                 "403": "the key's scope does not allow this "
                                        "(`forbidden_scope`)",
                                 "503": "database unavailable"})
SUBMIT_LIMIT_ERRORS = error_responses(**{
    "403": "the key's scope does not allow submitting (`forbidden_scope`), or the tenant may "
           "not use this priority",
    "429": "a tenant limit: `rate_limited` (submissions per minute, waiting jobs; see "
           "`Retry-After`) or `budget_exceeded` (with `remaining` and `resets_at`)"})
BODY_ERRORS = error_responses(**{"400": "the body is not JSON",
                                 "413": "the body is larger than TIDEGATE_MAX_BODY_BYTES",
                                 "422": "invalid request"})


class EtaPublic(BaseModel):
    """When a waiting job is expected to start and finish (see docs/operations.md, "ETA")."""

    start_at: datetime
    finish_at: datetime
    confidence: float = Field(ge=0, le=1, description="0-1: how much the estimate rests on "
                              "(the type's recent runs, a known lane rate, a lane not swamped)")

    @classmethod
    def of(cls, eta: Any) -> EtaPublic | None:
        """From a ``core.eta.Eta`` (None: no estimate)."""
        if eta is None:
            return None
        return cls(start_at=datetime.fromtimestamp(eta.start_at, UTC),
                   finish_at=datetime.fromtimestamp(eta.finish_at, UTC),
                   confidence=eta.confidence)


class WarningPublic(BaseModel):
    code: str = Field(description="`deadline_unmeetable`: the estimate finishes after the "
                      "deadline")
    message: str


class DeadlineErrorPublic(ErrorPublic):
    eta: EtaPublic | None = Field(default=None, description="`deadline_unmeetable`: the "
                                  "estimate that misses the deadline")


class DeadlineErrorBody(BaseModel):
    """409 `deadline_unmeetable`: refused (`on_deadline_unmeetable: refuse`), nothing stored."""

    error: DeadlineErrorPublic


class JobAccepted(BaseModel):
    job_id: str
    status: str
    type: str
    priority: str
    created_at: datetime
    deadline_at: datetime | None = None
    eta: EtaPublic | None = Field(default=None, description="the first estimate, while the "
                                  "job waits")
    warnings: list[WarningPublic] = Field(default_factory=list)
    webhook: WebhookCreated | None = None


class JobPublic(BaseModel):
    job_id: str
    type: str
    tenant: str
    status: str
    priority: str
    progress: int
    message: str
    result: Any = None
    error: ErrorPublic | None = None
    attempts: int
    max_attempts: int
    usage: UsagePublic
    metadata: dict[str, Any]
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(default=None, description="when the job fails "
                                        "`expired` if it has not finished")
    deadline_at: datetime | None = Field(default=None, description="the deadline given at "
                                         "submit")
    schedule: str | None = Field(default=None, description="the schedule that created "
                                 "this job, if one did")
    eta: EtaPublic | None = Field(default=None, description="while the job is queued or "
                                  "waiting for quota (in `GET /v1/jobs/{id}`; null in lists)")

    @classmethod
    def of(cls, job: Job, eta: Any = None) -> JobPublic:
        return cls(
            job_id=job.id, type=job.type, tenant=job.tenant, status=job.status.value,
            priority=job.priority.value,
            progress=job.progress, message=job.message, result=job.result,
            error=ErrorPublic(**job.error) if job.error else None, attempts=job.attempts,
            max_attempts=job.max_attempts,
            usage=UsagePublic.of(job),
            metadata=job.metadata, cancel_requested=job.cancel_requested,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            expires_at=job.expires_at, deadline_at=job.deadline_at, schedule=job.schedule,
            eta=EtaPublic.of(eta))


class Me(BaseModel):
    """Who the caller's key is: its tenant and scope."""
    tenant: str
    scope: str
    key_id: str | None = Field(None, description="None when TIDEGATE_AUTH=off")


class JobList(BaseModel):
    jobs: list[JobPublic]
    next_cursor: str | None


class JobEventPublic(BaseModel):
    id: int
    kind: str
    attempt: int
    at: datetime
    detail: dict[str, Any]


class GenerateRequest(BaseModel):
    startup: str = Field(min_length=1, max_length=500, pattern=NO_NUL_REGEX)
    focus: str | None = Field(default=None, max_length=2000, pattern=NO_NUL_REGEX)


class GenerateAccepted(BaseModel):
    job_id: str
    status: str


class LegacyStatus(BaseModel):
    job_id: str
    state: str
    progress: int
    result: Any = None

    @classmethod
    def of(cls, job: Job) -> LegacyStatus:
        result: Any = job.result
        if job.error_code and job.status.terminal and job.result is None:
            result = {"error": job.error}
        return cls(job_id=job.id, state=CELERY_STATES[job.status], progress=job.progress,
                   result=result)


class QueueDepth(BaseModel):
    name: str
    ready: int | None
    unacked: int | None


class WorkerInfo(BaseModel):
    name: str
    active: int
    reserved: int
    queues: list[str]


class QueuesReport(BaseModel):
    broker: str
    queues: list[QueueDepth]
    workers: list[WorkerInfo]
    jobs_by_status: dict[str, int]
    cached_at: datetime


class JobStreamEvent(BaseModel):
    """One message of an event stream (`/v1/jobs/{id}/events`, `/v1/events`) and the body of
    a webhook delivery; ``id`` is the SSE id to resume after (`Last-Event-ID`)."""

    id: int
    job_id: str
    type: str
    tenant: str
    kind: str = Field(description="submitted, claimed, progress, llm_call, quota_wait, "
                      "retrying, requeued, handed_back, cancel_requested, replayed, "
                      "succeeded, failed, cancelled")
    at: datetime
    attempt: int
    status: str = Field(description="the job's status once this event happened")
    detail: dict[str, Any] = Field(default_factory=dict)


class LaneReport(BaseModel):
    """One provider lane (`provider:model`) as the shared limiter sees it."""

    model_config = ConfigDict(extra="allow")

    lane: str
    limits: dict[str, Any] = Field(description="effective: configured, else learned")
    configured: dict[str, Any]
    learned: dict[str, Any]
    sources: dict[str, str]
    rate_factor: float
    usage_1m: dict[str, int]
    in_flight: int
    waiting: dict[str, int]
    paused_until: float | None
    paused_for_s: float = 0.0


class LimitsReport(BaseModel):
    lanes: list[LaneReport]


class UsageLine(BaseModel):
    tenant: str | None = None
    type: str | None = None
    lane: str | None = None
    day: date | None = None
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    reused_requests: int = Field(0, description="calls answered without a provider call: "
                                 "from the response cache or by an identical call in flight")
    saved_input_tokens: int = 0
    saved_output_tokens: int = 0
    saved_cost_usd: float = Field(0.0, description="what the reused calls would have cost")


class UsageReport(BaseModel):
    start: date
    end: date
    group_by: list[str]
    rows: list[UsageLine]
