"""The kinds of job events (the event stream, the history and webhooks all use these)."""

from __future__ import annotations

TERMINAL_KINDS = frozenset({"succeeded", "failed", "cancelled"})

EVENT_KINDS = frozenset({
    "submitted", "claimed", "progress", "llm_call", "quota_wait", "retrying", "requeued",
    "handed_back", "cancel_requested", "replayed", *TERMINAL_KINDS})

# What a webhook that names no events receives: the end of the job.
DEFAULT_WEBHOOK_KINDS = ("succeeded", "failed", "cancelled")
