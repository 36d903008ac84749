"""Prometheus metrics. The API exports the system's state (jobs by status, queue depth,
workers, provider lanes) read at scrape time, and its own request and submission counters;
each worker exports its own job counters (summed over its pool's processes with prefork:
multiprocess mode, see :func:`use_multiprocess_dir`)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# -- API --------------------------------------------------------------------------------------
jobs_submitted = Counter("tidegate_jobs_submitted_total", "Jobs accepted (new rows), by type "
                         "and priority", ["type", "priority"])


def count_submission(job: Any, created: bool) -> None:
    """A submission that made a new row (a repeated Idempotency-Key does not count)."""
    if created:
        jobs_submitted.labels(type=job.type, priority=job.priority.value).inc()


http_requests = Counter("tidegate_http_requests_total", "HTTP requests answered, by route "
                        "template, method and status", ["route", "method", "status"])
http_seconds = Histogram("tidegate_http_request_duration_seconds", "Time to answer an HTTP "
                         "request (streams: to their first byte), by route and method",
                         ["route", "method"], buckets=HTTP_BUCKETS)

# Summed over the live processes in multiprocess mode (Gunicorn's workers each serve streams).
event_streams_open = Gauge("tidegate_event_streams_open", "Server-sent event streams open",
                           multiprocess_mode="livesum")

# -- workers ----------------------------------------------------------------------------------
jobs_completed = Counter("tidegate_jobs_completed_total", "Jobs that succeeded, by type",
                         ["type"])
jobs_failed = Counter("tidegate_jobs_failed_total", "Jobs that failed (dead letters), by type "
                      "and error code", ["type", "code"])
jobs_retried = Counter("tidegate_jobs_retried_total", "Attempts that ended in a retry, by type",
                       ["type"])
job_duration = Histogram("tidegate_job_duration_seconds", "How long the attempt that ended a "
                         "job (succeeded, failed or cancelled) ran, by type", ["type"],
                         buckets=DURATION_BUCKETS)

job_outcomes = Counter("tidegate_job_outcomes_total",
                       "Job deliveries run by this worker, by type and outcome "
                       "(succeeded, failed, cancelled, retry, skipped, lost)", ["type", "outcome"])
job_seconds = Histogram("tidegate_job_run_seconds", "Time one delivery of a job ran, by type",
                        ["type"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))


def use_multiprocess_dir(path: Path) -> None:
    """Count in files under ``path`` from now on (this process and the processes it forks),
    so that a prefork pool's children add up. Call before the first sample is recorded; the
    directory is emptied, as the previous run's files would be counted again."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    owner = os.getpid()
    # Only by the process that made it: a forked child exiting must not take it away.
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value class when imported; labelled children made from
    # now on take the file-backed one.
    values.ValueClass = values.get_value_class()


def process_registry() -> CollectorRegistry:
    """This process's counters, or every process's when multiprocess mode is on."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition(*registries: CollectorRegistry) -> bytes:
    return b"".join(generate_latest(r) for r in registries)


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
