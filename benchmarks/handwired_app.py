"""The hand-wired stack Tidegate replaces, as these teams write it: Flask on Gunicorn, Celery on
Redis (broker DB 0, result backend DB 1), `task.delay()` in the request handler.

    POST /generate {"startup": "..."}  -> {"job_id", "status": "queued"}
    GET  /status/<id>                  -> AsyncResult's state (and result)

Run by `benchmarks.submit_bench` and `benchmarks.e2e_bench` under
`gunicorn --workers 2 --threads 2 benchmarks.handwired_app:app`, and its worker with
`celery -A benchmarks.handwired_app:celery worker --concurrency 4 --prefetch-multiplier 1
--max-tasks-per-child 20`. `HANDWIRED_REDIS` is the Redis server (`redis://host:port`).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from flask import Flask, jsonify, request

REDIS = os.environ.get("HANDWIRED_REDIS", "redis://127.0.0.1:6379")

celery = Celery("handwired", broker=f"{REDIS}/0", backend=f"{REDIS}/1")
celery.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                   broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@celery.task(autoretry_for=(Exception,), retry_backoff=True, max_retries=3)  # type: ignore[misc]
def generate_report(startup: str) -> dict[str, Any]:
    """A no-op in the benchmarks: what is measured is the cost of accepting and running a job."""
    return {"startup": startup, "report": ""}


app = Flask(__name__)


@app.post("/generate")
def generate() -> Any:
    body = request.get_json(force=True, silent=True) or {}
    startup = body.get("startup")
    if not isinstance(startup, str) or not startup:
        return jsonify({"error": "startup is required"}), 400
    task = generate_report.delay(startup)
    return jsonify({"job_id": task.id, "status": "queued"}), 202


@app.get("/status/<job_id>")
def status(job_id: str) -> Any:
    result = AsyncResult(job_id, app=celery)
    body: dict[str, Any] = {"job_id": job_id, "status": result.state.lower()}
    if result.successful():
        body["result"] = result.result
    return jsonify(body)


@celery.task(ignore_result=True)  # type: ignore[misc]
def noop(i: int) -> None:
    """Raw Celery's floor for `benchmarks.e2e_bench`: a task that only counts itself."""
    _done().incr("handwired:done")


def _done() -> Any:
    import redis

    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(f"{REDIS}/1")
    return _redis


_redis: Any = None
