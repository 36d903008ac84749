"""Health, readiness and queue depth."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ...adapters.metrics import exposition, process_registry
from ...core.errors import Unavailable
from ..deps import ContainerDep, TenantDep
from ..schemas import AUTH_ERRORS, QueueDepth, QueuesReport, WorkerInfo

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


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(container: ContainerDep) -> PlainTextResponse:
    """Prometheus metrics: jobs by status, queue depth, workers, provider lanes, and this
    API's submissions and HTTP requests. Aggregates only (no job's data), so it needs no API
    key."""
    return PlainTextResponse(exposition(process_registry(), container.metrics_registry),
                             media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/queues", response_model=QueuesReport, responses=AUTH_ERRORS)
async def queues(container: ContainerDep, _tenant: TenantDep) -> QueuesReport:
    """Depth of each priority queue (ready, unacked), the workers and their active and
    reserved counts. Cached for a moment, so polling it is cheap."""
    inspector = container.queue_inspector
    stats = await run_in_threadpool(inspector.stats)
    counts = await run_in_threadpool(container.store.count_by_status)
    return QueuesReport(
        broker=stats.broker, queues=[QueueDepth(**q) for q in stats.queues],
        workers=[WorkerInfo(**w) for w in stats.workers], jobs_by_status=counts,
        cached_at=datetime.fromtimestamp(stats.taken_at, UTC))
