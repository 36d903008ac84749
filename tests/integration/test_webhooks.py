"""Webhooks end to end: a real receiver that verifies every signature sees every terminal
event exactly once per delivery id, although it was down for the first part of the run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate import webhooks
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.embedded import free_port
from tidegate.worker.scheduler import run_scheduler

from .helpers import running_worker, settings_for, wait_until


class Receiver:
    """An HTTP server that checks each delivery's signature with the secret of its path."""

    def __init__(self, port: int, *, answer: int = 200) -> None:
        self.port = port
        self.answer = answer
        self.secrets: dict[str, str] = {}
        self.received: list[dict] = []
        self.bad: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/tenant")
                    self.end_headers()
                    return
                try:
                    webhooks.verify(receiver.secrets[self.path], dict(self.headers), body)
                    webhooks.verify(receiver.secrets[self.path], dict(self.headers),
                                    body + b" ")  # a changed body must not verify
                    receiver.bad.append("a changed body verified")
                except webhooks.InvalidSignature as exc:
                    if "no signature matches" not in str(exc):
                        receiver.bad.append(f"{self.path}: {exc}")
                event = json.loads(body)
                receiver.received.append({
                    "path": self.path, "delivery": self.headers[webhooks.DELIVERY_HEADER],
                    "kind": self.headers[webhooks.EVENT_HEADER], "event": event,
                    "at": time.time(), "headers": dict(self.headers), "body": body})
                self.send_response(receiver.answer)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[tuple[TestClient, dict, Receiver]]:
    with _env(tmp_path, redis_url) as env:
        yield env


@contextmanager
def _env(tmp_path: Path, redis_url: str,
         **settings_: object) -> Iterator[tuple[TestClient, dict, Receiver]]:
    """The API, a worker and the scheduler (which sends webhooks), an `acme` key, and a
    receiver (not started)."""
    settings = settings_for(tmp_path, redis_url=redis_url, webhook_allow_private=True,
                            webhook_retry_base_s=0.3, webhook_retry_cap_s=1.0,
                            webhook_poll_s=0.2, sweep_interval_s=1.0, **settings_)
    engine = make_engine(settings.database)
    upgrade(engine)
    key, _ = create_key(SqlJobStore(engine), tenant="acme", secret=settings.secret_key)
    engine.dispose()
    receiver = Receiver(free_port())
    stop = threading.Event()
    scheduler = threading.Thread(target=run_scheduler, args=(settings,), kwargs={"stop": stop},
                                 daemon=True)
    scheduler.start()
    try:
        with TestClient(create_app(settings)) as client, running_worker(settings):
            yield client, {"Authorization": f"Bearer {key}"}, receiver
    finally:
        stop.set()
        scheduler.join(timeout=30)
        receiver.stop()


def test_a_receiver_down_for_a_while_still_gets_every_terminal_event(env) -> None:
    client, auth, receiver = env
    base = f"http://127.0.0.1:{receiver.port}"
    r = client.post("/v1/webhooks", json={"url": f"{base}/tenant"}, headers=auth)
    assert r.status_code == 201, r.text
    tenant_hook = r.json()
    assert tenant_hook["secret"].startswith("whsec_") and tenant_hook["events"] == [
        "cancelled", "failed", "succeeded"]
    receiver.secrets["/tenant"] = tenant_hook["secret"]
    moved = client.post("/v1/webhooks", json={"url": f"{base}/moved"}, headers=auth).json()
    assert all(h["secret"] is None for h in client.get("/v1/webhooks", headers=auth).json())

    jobs = {}
    for i in range(3):
        jobs[client.post("/v1/jobs", json={"type": "echo", "input": {"text": str(i)}},
                         headers=auth).json()["job_id"]] = "succeeded"
    own = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "own"},
                                        "webhook": {"url": f"{base}/own", "events": ["*"]}},
                      headers=auth).json()
    assert own["webhook"]["secret"].startswith("whsec_")
    receiver.secrets["/own"] = own["webhook"]["secret"]
    jobs[own["job_id"]] = "succeeded"
    expired = client.post("/v1/jobs", json={"type": "echo", "deadline_s": 0.001},
                          headers=auth).json()["job_id"]
    jobs[expired] = "failed"
    slow = client.post("/v1/jobs", json={"type": "echo", "input": {"sleep_s": 30}},
                       headers=auth).json()["job_id"]
    wait_until(lambda: client.get(f"/v1/jobs/{slow}", headers=auth).json()["status"]
               == "running")
    assert client.delete(f"/v1/jobs/{slow}", headers=auth).status_code == 200
    jobs[slow] = "cancelled"

    def log(job_id: str) -> list[dict]:
        return client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth).json()

    # The receiver is down: deliveries fail and are retried.
    wait_until(lambda: all(d["attempts"] >= 2 for j in jobs for d in log(j)
                           if d["url"].endswith("/tenant")) and all(log(j) for j in jobs),
               timeout_s=60)
    failing = log(next(iter(jobs)))[0]
    assert failing["status"] == "pending" and "Connect" in failing["last_error"]
    receiver.start()

    def tenant_events() -> set[tuple[str, str]]:
        return {(d["event"]["job_id"], d["kind"]) for d in receiver.received
                if d["path"] == "/tenant"}

    wait_until(lambda: tenant_events() == set(jobs.items()), timeout_s=60)
    assert receiver.bad == []
    # Its own webhook got every event of that one job, in the log's order.
    wait_until(lambda: all(d["status"] == "delivered" for d in log(own["job_id"])
                           if not d["url"].endswith("/moved")), timeout_s=30)
    history = [e["id"] for e in client.get(f"/v1/jobs/{own['job_id']}/history",
                                           headers=auth).json()]
    own_seen = sorted({d["event"]["id"] for d in receiver.received if d["path"] == "/own"})
    assert own_seen == history
    # At least once, and each delivery id names one event to one endpoint.
    by_delivery: dict[str, int] = {}
    for d in receiver.received:
        assert by_delivery.setdefault(d["delivery"], d["event"]["id"]) == d["event"]["id"]
    # A redirect is not followed: that endpoint's deliveries keep failing.
    def redirected() -> list[dict]:
        return [d for j in jobs for d in log(j) if d["endpoint_id"] == moved["id"]]

    # each tried once by now (the sender may still be on its first pass)
    wait_until(lambda: all(d["response_status"] is not None for d in redirected()),
               timeout_s=30)
    assert redirected() and all(d["status"] == "pending" and d["response_status"] == 302
                                for d in redirected())
    assert not any(d["path"] == "/moved" for d in receiver.received)
    # Removing the endpoint: later events are not queued for it.
    assert client.delete(f"/v1/webhooks/{moved['id']}", headers=auth).status_code == 204
    assert [h["id"] for h in client.get("/v1/webhooks", headers=auth).json()] == [
        tenant_hook["id"]]
    metrics = client.get("/metrics").text
    assert 'tidegate_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert "tidegate_event_streams_open" in metrics


def test_webhook_urls_and_rotation(env) -> None:
    client, auth, _ = env
    for body in ({"url": "ftp://example.com/x"}, {"url": "https://u:p@example.com/"},
                 {"url": "https://example.com/", "events": ["nope"]}):
        r = client.post("/v1/webhooks", json=body, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", body
    r = client.post("/v1/jobs", json={"type": "echo", "webhook": {"url": "gopher://x"}},
                    headers=auth)
    assert r.status_code == 422
    hook = client.post("/v1/webhooks", json={"url": "https://example.com/h",
                                             "events": ["*"]}, headers=auth).json()
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate", headers=auth).json()
    assert rotated["secret"] != hook["secret"] and rotated["id"] == hook["id"]
    assert client.post("/v1/webhooks/nope/rotate", headers=auth).status_code == 404
    assert client.delete("/v1/webhooks/nope", headers=auth).status_code == 404
    # Idempotent resubmission: the same job, its secret not shown again.
    body = {"type": "echo", "webhook": {"url": "https://example.com/j"}}
    first = client.post("/v1/jobs", json=body, headers={**auth, "Idempotency-Key": "w1"})
    again = client.post("/v1/jobs", json=body, headers={**auth, "Idempotency-Key": "w1"})
    assert first.json()["job_id"] == again.json()["job_id"]
    assert first.json()["webhook"]["secret"] and again.json()["webhook"]["secret"] is None


def test_a_failing_endpoint_is_retried_with_backoff_until_the_deadline_then_failed(
        tmp_path: Path, redis_url: str) -> None:
    give_up_s = 4.0
    with _env(tmp_path, redis_url, webhook_give_up_s=give_up_s) as (client, auth, receiver):
        receiver.answer = 500  # reachable, signed deliveries verify, and it always fails
        receiver.start()
        url = f"http://127.0.0.1:{receiver.port}/down"
        hook = client.post("/v1/webhooks", json={"url": url}, headers=auth).json()
        receiver.secrets["/down"] = hook["secret"]
        job_id = client.post("/v1/jobs", json={"type": "echo"}, headers=auth).json()["job_id"]

        def delivery() -> dict:
            [row] = client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth).json()
            return row

        wait_until(lambda: client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth).json()
                   and delivery()["status"] == "failed", timeout_s=30)
        row = delivery()
        assert row["kind"] == "succeeded" and row["response_status"] == 500
        assert row["last_error"] == "HTTP 500" and row["next_attempt_at"] is None
        tries = [d["at"] for d in receiver.received]
        assert receiver.bad == [] and len(tries) == row["attempts"] >= 4
        assert len({d["delivery"] for d in receiver.received}) == 1  # one id on every retry
        # Backed off: the waits grow (0.3 s doubling, capped at 1 s, jittered by 20 %) ...
        waits = [b - a for a, b in zip(tries, tries[1:], strict=False)]
        assert waits[0] < waits[2] and all(w < 1.0 + 0.5 for w in waits)
        # ... and retried until the deadline, not given up at the last step before it.
        created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")).timestamp()
        assert tries[-1] - created >= give_up_s - 0.05
        assert tries[-1] - created < give_up_s + 2.0
        metrics = client.get("/metrics").text
        assert 'tidegate_webhook_deliveries_total{outcome="failed"} 1.0' in metrics


def test_after_a_rotation_deliveries_verify_with_the_old_secret_and_the_new(env) -> None:
    client, auth, receiver = env
    receiver.start()
    hook = client.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{receiver.port}/r"},
                       headers=auth).json()
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate", headers=auth).json()
    receiver.secrets["/r"] = hook["secret"]  # a receiver not yet told of the new secret
    job_id = client.post("/v1/jobs", json={"type": "echo"}, headers=auth).json()["job_id"]
    wait_until(lambda: any(d["event"]["job_id"] == job_id for d in receiver.received),
               timeout_s=30)
    assert receiver.bad == []  # the old secret verified (the handler checks every delivery)
    [(headers, body)] = [(d["headers"], d["body"]) for d in receiver.received
                         if d["event"]["job_id"] == job_id]
    webhooks.verify(rotated["secret"], headers, body)  # and so does the new one
    assert headers[webhooks.SIGNATURE_HEADER].count("v1=") == 2
