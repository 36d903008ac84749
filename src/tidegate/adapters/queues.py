"""Queue depth and worker counts from the broker, on Redis and on RabbitMQ."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from ..config import redact
from ..core.errors import Unavailable
from ..core.statuses import QUEUES


@dataclass
class QueueStats:
    broker: str
    queues: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    taken_at: float = field(default_factory=time.time)


def _redis_depths(app: Celery) -> dict[str, tuple[int, int | None]]:
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        ready = {q: int(client.llen(q)) for q in QUEUES}
        unacked: Counter[str] = Counter()
        # kombu keeps delivered-but-unacked messages in one hash: [payload, exchange, key]
        if client.hlen("unacked") <= 5000:
            for raw in client.hvals("unacked"):
                try:
                    unacked[json.loads(raw)[2]] += 1
                except (ValueError, IndexError, TypeError):
                    continue
        return {q: (ready[q], unacked.get(q, 0)) for q in QUEUES}


def _amqp_depths(app: Celery) -> dict[str, tuple[int, int | None]]:
    out: dict[str, tuple[int, int | None]] = {}
    with app.connection_for_read() as conn:
        channel = conn.channel()
        try:
            for q in QUEUES:
                try:
                    _, ready, _consumers = channel.queue_declare(q, passive=True)
                except Exception:  # not declared yet: no worker has started
                    channel = conn.channel()
                    ready = 0
                out[q] = (int(ready), None)  # unacked comes from the workers below
        finally:
            channel.close()
    return out


def _workers(app: Celery, timeout_s: float) -> tuple[list[dict[str, Any]], Counter[str]]:
    # Three broadcasts in parallel: each waits the full timeout for replies.
    with ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(lambda m=m: getattr(app.control.inspect(timeout=timeout_s), m)())
                 for m in ("active", "reserved", "active_queues")]
        active, reserved, queues = (c.result() or {} for c in calls)
    held: Counter[str] = Counter()
    workers = []
    for name in sorted(set(active) | set(reserved) | set(queues)):
        tasks = list(active.get(name, [])) + list(reserved.get(name, []))
        for t in tasks:
            held[(t.get("delivery_info") or {}).get("routing_key", "")] += 1
        workers.append({"name": name, "active": len(active.get(name, [])),
                        "reserved": len(reserved.get(name, [])),
                        "queues": sorted(q["name"] for q in queues.get(name, []))})
    return workers, held


class QueueInspector:
    """Cached for ``ttl_s`` so that dashboards polling it cost the broker almost nothing."""

    def __init__(self, app: Celery, *, ttl_s: float = 2.0, inspect_timeout_s: float = 1.0) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self.inspect_timeout_s = inspect_timeout_s
        self._cached: QueueStats | None = None
        self._lock = threading.Lock()

    def stats(self) -> QueueStats:
        with self._lock:
            if self._cached and time.time() - self._cached.taken_at < self.ttl_s:
                return self._cached
            self._cached = self._collect()
            return self._cached

    def _collect(self) -> QueueStats:
        url = self.app.conf.broker_url or ""
        try:
            depths = (_redis_depths if url.startswith(("redis", "rediss")) else
                      _amqp_depths)(self.app)
            workers, held = _workers(self.app, self.inspect_timeout_s)
        except Exception as exc:
            raise Unavailable(f"broker unavailable: {type(exc).__name__}") from exc
        queues = [{"name": q, "ready": ready,
                   "unacked": unacked if unacked is not None else held.get(q, 0)}
                  for q, (ready, unacked) in depths.items()]
        return QueueStats(broker=redact(url), queues=queues, workers=workers)
