"""Prometheus collector for the webhook outbox, read at scrape time. (Open event streams are
``tidegate_event_streams_open`` in adapters.metrics, counted by the hub.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily


class DeliveriesCollector:
    """``tidegate_webhook_deliveries_total{outcome}`` from the outbox table (delivered,
    failed for good, pending), so every API process reports the same numbers. Purging old jobs
    removes their deliveries, so the count can go down after a purge."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        try:
            counts = self._counts()
        except Exception:  # the database is down: report nothing rather than fail the scrape
            return
        counter = CounterMetricFamily("tidegate_webhook_deliveries",
                                      "Webhook deliveries by outcome", labels=["outcome"])
        for outcome in ("delivered", "failed", "pending"):
            counter.add_metric([outcome], counts.get(outcome, 0))
        yield counter
