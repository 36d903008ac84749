"""The classic Flask `/generate` + `/status` app, backed by Tidegate instead of Celery.

Before, the request handler called ``generate_report.delay(startup)`` and ``/status`` read
``AsyncResult(id)``; every worker called the provider on its own and the provider's 429s
failed the jobs. Now the same two endpoints (the frontend that polls them does not change)
submit to Tidegate and read the job back: one shared rate limit, retries, progress, and
nothing lost when a worker dies.

    TIDEGATE_URL=http://127.0.0.1:8000 TIDEGATE_API_KEY=tg_... flask --app examples.flask_app run

Needs ``pip install tidegate flask`` only: the client imports no Celery, no SDKs.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from tidegate.client import Client, InvalidInput, NotFound, RateLimited

app = Flask(__name__)
# One client per process: it keeps its HTTP connections open between requests. URL and key
# come from TIDEGATE_URL and TIDEGATE_API_KEY.
tidegate = Client()


@app.post("/generate")
def generate() -> Any:
    body = request.get_json(force=True, silent=True) or {}
    startup = body.get("startup")
    if not isinstance(startup, str) or not startup:
        return jsonify({"error": "startup is required"}), 400
    try:
        # The idempotency key makes a double click (or the browser's retry) one job, not two.
        job = tidegate.submit("startup_report", {"startup": startup},
                              idempotency_key=request.headers.get("Idempotency-Key"))
    except InvalidInput as exc:
        return jsonify({"error": exc.message}), 400
    except RateLimited as exc:  # this tenant's submit rate or queue limit
        return jsonify({"error": exc.message}), 429, {"Retry-After": str(exc.retry_after)}
    return jsonify({"job_id": job.job_id, "status": job.status}), 202


@app.get("/status/<job_id>")
def status(job_id: str) -> Any:
    try:
        job = tidegate.get(job_id)
    except NotFound:
        return jsonify({"error": "no such job"}), 404
    body: dict[str, Any] = {"job_id": job.job_id, "status": job.status,
                            "progress": job.progress, "message": job.message}
    if job.status == "succeeded":
        body["result"] = job.result
    elif job.error is not None:
        body["error"] = job.error.message
    return jsonify(body)
