"""Prometheus counters of the LLM gateway (exported by the worker's metrics endpoint)."""

from __future__ import annotations

from prometheus_client import Counter

provider_calls = Counter("tidegate_provider_calls_total",
                         "Provider calls by lane and outcome (ok, rate_limited, transient, "
                         "permanent)", ["lane", "outcome"])
quota_waits = Counter("tidegate_quota_waits_total",
                      "Admissions refused by the shared limiter, by lane and reason",
                      ["lane", "reason"])
tokens = Counter("tidegate_tokens_total", "Tokens used, by lane and kind (input, output)",
                 ["lane", "kind"])
llm_tokens = Counter("tidegate_llm_tokens_total", "Tokens used, by lane, tenant and direction "
                     "(input, output)", ["lane", "tenant", "direction"])
llm_cost = Counter("tidegate_llm_cost_usd_total", "Provider cost in USD (priced models only), "
                   "by lane and tenant", ["lane", "tenant"])
reused_calls = Counter("tidegate_llm_reused_calls_total", "Calls answered without a provider "
                       "call: from the response cache or by an identical call in flight",
                       ["lane", "how"])
saved_cost = Counter("tidegate_llm_saved_cost_usd_total", "What reused answers would have "
                     "cost (priced models only), by lane and tenant", ["lane", "tenant"])
