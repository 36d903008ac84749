"""Prometheus collectors for the event streams and the webhook outbox, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class StreamsCollector:
    """``tidegate_event_streams_open``: event streams this API process serves now."""

    def __init__(self, hub: Callable[[], Any]) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        hub = self._hub()
        gauge = GaugeMetricFamily("tidegate_event_streams_open",
                                  "Server-sent event streams open on this API process")
        gauge.add_metric([], hub.open_streams if hub is not None else 0)
        yield gauge


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
