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
    headers), use over the last minute, in-flight calls, waiting jobs by priority, the
    pause a 429 imposed, and `calibration`: per direction (`input`, `output`) and content
    class (`prose`, `code`, `cjk`), the learned ratio of the provider's reported tokens to
    the chars/4 estimate (`source: learned`, with its `samples`), or the conservative prior
    reserved until then (`source: prior`). Keys other than admin see only the lanes the settings configure."""
    lanes = await run_in_threadpool(
        lane_report, container.limiter,  # type: ignore[attr-defined]
        container.calibration)  # type: ignore[attr-defined]
    if not caller.is_admin:
        lanes = [lane for lane in lanes if "configured" in lane["sources"].values()]
    return {"lanes": lanes}


def lane_report(limiter: Any, calibration: Any = None) -> list[dict[str, Any]]:
    """Every lane's snapshot, with the time left on its pause (and its calibration, when a
    calibration store is given)."""
    import redis

    from ...core.limits.calibration import report

    try:
        snaps = [limiter.snapshot(lane).to_dict() for lane in limiter.lanes()]
        if calibration is not None:
            for snap in snaps:
                snap["calibration"] = report(calibration.ratios(snap["lane"]))
    except redis.RedisError as exc:
        raise Unavailable(f"Redis unavailable: {type(exc).__name__}") from exc
    now = time.time()
    for snap in snaps:
        until = snap["paused_until"]
        snap["paused_for_s"] = round(until - now, 2) if until and until > now else 0.0
    return snaps
