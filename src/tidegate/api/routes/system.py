"""Health, readiness and queue depth."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ...adapters.metrics import exposition, process_registry
from ...core.errors import Unauthorized, Unavailable
from ..deps import ContainerDep, Reader
from ..schemas import AUTH_ERRORS, Me, QueueDepth, QueuesReport, WorkerInfo, error_responses

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database or broker unreachable"}})
def readyz(container: ContainerDep) -> JSONResponse:
    """The database and the broker are reachable."""
    checks: dict[str, str] = {}
    for name, ping in (("database", container.store.ping), ("broker", container.dispatcher.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Unavailable as exc:
            checks[name] = exc.message
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/v1/me", response_model=Me, responses=AUTH_ERRORS)
def me(caller: Reader) -> Me:
    """The tenant and scope of the key this request carries (the dashboard shows admin-only
    columns and actions by it)."""
    return Me(tenant=caller.tenant, scope=caller.scope, key_id=caller.key_id)


@router.get("/metrics", response_class=PlainTextResponse,
            responses=error_responses(**{"401": "TIDEGATE_METRICS_TOKEN is set and this "
                                                "request does not carry it"}))
def metrics(container: ContainerDep, request: Request) -> PlainTextResponse:
    """Prometheus metrics: jobs by status, queue depth, workers, provider lanes, and this
    API's submissions and HTTP requests. Open by default (aggregates only, no job's data);
    with TIDEGATE_METRICS_TOKEN set, scrapers must send `Authorization: Bearer <that token>`."""
    token = container.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("this endpoint needs the metrics token: "
                               "`Authorization: Bearer <TIDEGATE_METRICS_TOKEN>`")
    return PlainTextResponse(exposition(process_registry(), container.metrics_registry),
                             media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/queues", response_model=QueuesReport, responses=AUTH_ERRORS)
async def queues(container: ContainerDep, caller: Reader) -> QueuesReport:
    """Depth of each priority queue (ready, unacked), the workers and their active and
    reserved counts, and the caller's jobs by status (an admin key: every tenant's). Worker
    host names and pids are shown to admin keys only. Cached for a moment, so polling it is
    cheap."""
    inspector = container.queue_inspector  # type: ignore[attr-defined]
    stats = await run_in_threadpool(inspector.stats)
    counts = await run_in_threadpool(lambda: container.store.count_by_status(
        tenant=caller.owner))
    workers = [WorkerInfo(**w) for w in stats.workers]
    if not caller.is_admin:  # where the service runs is not a tenant's business
        workers = [w.model_copy(update={"name": f"worker-{i + 1}"})
                   for i, w in enumerate(workers)]
    return QueuesReport(
        broker=stats.broker, queues=[QueueDepth(**q) for q in stats.queues],
        workers=workers, jobs_by_status=counts,
        cached_at=datetime.fromtimestamp(stats.taken_at, UTC))
