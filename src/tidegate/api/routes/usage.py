"""/v1/usage: requests, tokens and cost, from the persisted usage per tenant and UTC day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...adapters.sql.accounts import GROUPS
from ...core.errors import InvalidInput
from ..deps import ContainerDep, Reader
from ..params import TenantName
from ..schemas import AUTH_ERRORS, UsageLine, UsageReport, error_responses

router = APIRouter(tags=["usage"], responses=AUTH_ERRORS)

MAX_DAYS = 3660


@router.get("/v1/usage", response_model=UsageReport,
            responses=error_responses(**{"422": "invalid dates or grouping"}))
def usage(container: ContainerDep, caller: Reader,
          start: Annotated[date | None, Query(alias="from", description="first UTC day "
                                              "(default: the 1st of this month)")] = None,
          end: Annotated[date | None, Query(alias="to", description="last UTC day, "
                                            "included (default: today)")] = None,
          group_by: Annotated[str, Query(description="comma-separated: tenant, type, lane, "
                                         "day")] = "tenant",
          tenant: Annotated[TenantName | None, Query(description="admin keys: one tenant "
                                                                 "only")]
          = None) -> UsageReport:
    """LLM requests, input/output tokens and cost, and the calls answered by another call's
    answer (cache, in-flight dedup) with what they saved: an admin key sees every tenant, any
    other key its own tenant only."""
    today = datetime.now(UTC).date()
    start = start or today.replace(day=1)
    end = end or today
    if end < start or (end - start).days > MAX_DAYS:
        raise InvalidInput(f"`to` must be on or after `from`, at most {MAX_DAYS} days later")
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    if any(g not in GROUPS for g in groups) or len(set(groups)) != len(groups):
        raise InvalidInput("group_by: a comma-separated list of tenant, type, lane, day")
    who = tenant if caller.is_admin else caller.tenant
    rows = container.store.usage_report(tenant=who, start=start, end=end, group_by=groups)
    return UsageReport(start=start, end=end, group_by=groups, rows=[
        UsageLine(**r.group, requests=r.requests, input_tokens=r.input_tokens,
                  output_tokens=r.output_tokens, cost_usd=round(r.cost_nanos / 1e9, 9),
                  reused_requests=r.reused_requests,
                  saved_input_tokens=r.saved.input_tokens,
                  saved_output_tokens=r.saved.output_tokens,
                  saved_cost_usd=round(r.saved.cost_nanos / 1e9, 9))
        for r in rows])
