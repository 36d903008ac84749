"""Prometheus metrics. The API exports the system's state (jobs by status, queue depth,
workers, provider lanes) read at scrape time; each worker exports its own counters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

job_outcomes = Counter("tidegate_job_outcomes_total",
                       "Job deliveries run by this worker, by type and outcome "
                       "(succeeded, failed, cancelled, retry, skipped, lost)", ["type", "outcome"])
job_seconds = Histogram("tidegate_job_run_seconds", "Time one delivery of a job ran, by type",
                        ["type"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))


class SystemCollector(Collector):
    """Reads the job store, broker and limiter when scraped (cached a few seconds)."""

    def __init__(self, *, counts: Callable[[], dict[str, int]], queues: Callable[[], Any],
                 lanes: Callable[[], list[dict[str, Any]]], ttl_s: float = 5.0) -> None:
        self._sources = {"counts": counts, "queues": queues, "lanes": lanes}
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Any]] = {}

    def _get(self, name: str) -> Any:
        at, value = self._cache.get(name, (0.0, None))
        if time.monotonic() - at > self._ttl_s:
            try:
                value = self._sources[name]()
            except Exception as exc:  # a scrape must not fail because one source is down
                log.debug("metrics source %s unavailable: %s", name, exc)
                value = None
            self._cache[name] = (time.monotonic(), value)
        return value

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("tidegate_source_up", "Whether a metrics source answered",
                               labels=["source"])
        counts = self._get("counts")
        up.add_metric(["database"], 0 if counts is None else 1)
        if counts is not None:
            jobs = GaugeMetricFamily("tidegate_jobs", "Jobs in the store by status",
                                     labels=["status"])
            for status, n in counts.items():
                jobs.add_metric([status], n)
            yield jobs
        stats = self._get("queues")
        up.add_metric(["broker"], 0 if stats is None else 1)
        if stats is not None:
            ready = GaugeMetricFamily("tidegate_queue_ready", "Messages waiting in a queue",
                                      labels=["queue"])
            unacked = GaugeMetricFamily("tidegate_queue_unacked",
                                        "Messages delivered to workers, not yet acknowledged",
                                        labels=["queue"])
            for q in stats.queues:
                ready.add_metric([q["name"]], q["ready"] or 0)
                unacked.add_metric([q["name"]], q["unacked"] or 0)
            workers = GaugeMetricFamily("tidegate_workers", "Workers answering the broker")
            workers.add_metric([], len(stats.workers))
            yield from (ready, unacked, workers)
        lanes = self._get("lanes")
        up.add_metric(["redis"], 0 if lanes is None else 1)
        if lanes:
            fams = {
                "in_flight": GaugeMetricFamily("tidegate_lane_in_flight",
                                               "Provider calls in flight", labels=["lane"]),
                "waiting": GaugeMetricFamily("tidegate_lane_waiting",
                                             "Jobs waiting for quota", labels=["lane"]),
                "requests_1m": GaugeMetricFamily("tidegate_lane_requests_last_minute",
                                                 "Requests granted in the last minute",
                                                 labels=["lane"]),
                "rpm": GaugeMetricFamily("tidegate_lane_rpm_limit",
                                         "Requests per minute allowed (configured or learned)",
                                         labels=["lane"]),
                "rate_factor": GaugeMetricFamily("tidegate_lane_rate_factor",
                                                 "Share of the quota used after 429s",
                                                 labels=["lane"]),
                "paused_for_s": GaugeMetricFamily("tidegate_lane_paused_seconds",
                                                  "Seconds the lane stays paused after a 429",
                                                  labels=["lane"]),
            }
            for lane in lanes:
                name = [lane["lane"]]
                fams["in_flight"].add_metric(name, lane["in_flight"])
                fams["waiting"].add_metric(name, sum(lane["waiting"].values()))
                fams["requests_1m"].add_metric(name, lane["usage_1m"]["requests"])
                fams["rpm"].add_metric(name, lane["limits"]["rpm"] or 0)
                fams["rate_factor"].add_metric(name, lane["rate_factor"])
                fams["paused_for_s"].add_metric(name, lane.get("paused_for_s", 0.0))
            yield from fams.values()
        yield up
