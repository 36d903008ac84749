"""Spending: what every LLM call does about the tenant's budget and usage.

Before the call its estimate is reserved against the tenant's budgets (a refusal fails the
job with ``budget_exceeded``: the call is not made); after it the actual usage is settled and
added to the persisted usage per tenant, day, job type and lane; a call that failed is
refunded. Called by the LLM gateway, the one place every call goes through.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .budget import Budget, describe
from .errors import JobFailed, RetryLater, Unavailable
from .models import TenantSettings, Usage, utcnow
from .ports import AccountStore

log = logging.getLogger(__name__)

BUDGET_EXCEEDED = "budget_exceeded"


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation against a tenant's budgets, to settle or refund."""

    settings: TenantSettings
    rid: str


class Spending:
    def __init__(self, accounts: AccountStore, *, budget: Budget | None,
                 settings_of: Callable[[str], TenantSettings | None],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.accounts = accounts
        self.budget = budget
        self.settings_of = settings_of
        self.clock = clock

    def reserve(self, tenant: str, *, holder: str, tokens: int, nanos: int,
                ttl_s: float) -> Hold | None:
        """Reserve the call's estimate; None when the tenant has no budget. Raises
        JobFailed(budget_exceeded) when it does not fit."""
        if self.budget is None:
            return None
        try:
            s = self.settings_of(tenant)
        except Unavailable:  # cannot tell whether a budget applies: wait, not fail
            raise RetryLater(5.0, reason="database unavailable for the budget check",
                             counts_as_attempt=False, error_code="unavailable",
                             error_message="the tenant's budget could not be read") from None
        if s is None or not s.has_budget:
            return None
        rid = f"{holder}:{uuid.uuid4().hex[:12]}"
        refused = self.budget.reserve(s, rid, tokens=tokens, nanos=nanos, ttl_s=ttl_s,
                                      now=self.clock())
        if refused is not None:
            short = next((x for x in refused if not x.fits(tokens, nanos)
                          or (x.tokens is not None and x.tokens <= 0)
                          or (x.nanos is not None and x.nanos <= 0)), refused[0])
            raise JobFailed(BUDGET_EXCEEDED, (
                f"the next LLM call (estimated {tokens} tokens, ${nanos / 1e9:.6f}) does not "
                f"fit tenant {tenant!r}'s {short.period.name} budget; left: "
                f"{describe(refused)}; resets at {short.period.resets_at.isoformat()}"))
        return Hold(s, rid)

    def settle(self, hold: Hold | None, *, tenant: str, job_type: str, lane: str,
               usage: Usage) -> None:
        """The call was made: persist its usage, and settle the reservation."""
        try:
            self.accounts.add_usage(tenant=tenant, day=self.clock().date(), type=job_type,
                                    lane=lane, usage=usage)
        except Exception:  # the job's own totals still have it; the usage report misses it
            log.warning("could not record usage of tenant %s on %s", tenant, lane,
                        exc_info=True)
        if hold is not None and self.budget is not None:
            self.budget.settle(hold.settings, hold.rid,
                               tokens=usage.input_tokens + usage.output_tokens,
                               nanos=usage.cost_nanos, now=self.clock())

    def note_reused(self, *, tenant: str, job_type: str, lane: str, input_tokens: int,
                    output_tokens: int, cost_nanos: int) -> None:
        """A call answered by another call's answer: nothing spent, this much saved."""
        try:
            self.accounts.add_usage(tenant=tenant, day=self.clock().date(), type=job_type,
                                    lane=lane, usage=Usage(), requests=0, reused=1,
                                    saved=Usage(input_tokens, output_tokens, cost_nanos))
        except Exception:  # the job's events still say so; the usage report misses it
            log.warning("could not record a reused call of tenant %s on %s", tenant, lane,
                        exc_info=True)

    def refund(self, hold: Hold | None) -> None:
        """The call was not made or produced nothing billable."""
        if hold is not None and self.budget is not None:
            try:
                self.budget.refund(hold.settings, hold.rid, now=self.clock())
            except Exception:  # its TTL frees it anyway
                log.warning("could not refund reservation %s", hold.rid, exc_info=True)
