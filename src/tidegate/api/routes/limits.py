"""/v1/limits: each provider lane's quota, use and state, from the shared limiter."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ...core.errors import Unavailable
from ..deps import ContainerDep, Reader
from ..schemas import AUTH_ERRORS, LimitsReport

router = APIRouter(tags=["system"])


@router.get("/v1/limits", response_model=LimitsReport, responses=AUTH_ERRORS)
async def limits(container: ContainerDep, caller: Reader) -> dict[str, Any]:
    """Every lane (`provider:model`): its limits (configured or learned from the provider's
    headers), use over the last minute, in-flight calls, waiting jobs by priority, and the
    pause a 429 imposed. Keys other than admin see only the lanes the settings configure."""
    lanes = await run_in_threadpool(lane_report, container.limiter)  # type: ignore[attr-defined]
    if not caller.is_admin:
        lanes = [lane for lane in lanes if "configured" in lane["sources"].values()]
    return {"lanes": lanes}


def lane_report(limiter: Any) -> list[dict[str, Any]]:
    """Every lane's snapshot, with the time left on its pause."""
    import redis

    try:
        snaps = [limiter.snapshot(lane).to_dict() for lane in limiter.lanes()]
    except redis.RedisError as exc:
        raise Unavailable(f"Redis unavailable: {type(exc).__name__}") from exc
    now = time.time()
    for snap in snaps:
        until = snap["paused_until"]
        snap["paused_for_s"] = round(until - now, 2) if until and until > now else 0.0
    return snaps
