"""The broker fails: restarted mid-run, down while jobs are submitted, fed poison messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import BROKERS
from .harness import Ledger, RedisServer, Stack, conclude, wait_for

pytestmark = pytest.mark.slow


def broker_down(stack: Stack) -> Callable[[], None]:
    """Stop the stack's broker (SIGKILL for the private Redis, a node stop for RabbitMQ);
    returns the function that brings it back on the same port with the same data."""
    if stack.broker == "redis":
        redis: RedisServer = stack.redis  # type: ignore[attr-defined]
        redis.kill()
        return redis.start
    rabbit = stack.rabbit  # type: ignore[attr-defined]
    rabbit.stop()
    return rabbit.start


def submit_in_background(ledger: Ledger, stack: Stack, n: int, every_s: float,
                         input: dict[str, Any]) -> tuple[threading.Thread, list[float]]:
    latencies: list[float] = []

    def run() -> None:
        with stack.client(timeout_s=30) as client:
            for _ in range(n):
                t = time.monotonic()
                ledger.submit(client, "fault_work", input)
                latencies.append(time.monotonic() - t)
                time.sleep(every_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, latencies


@pytest.mark.parametrize("broker", BROKERS)
def test_broker_restart_during_a_run(request: pytest.FixtureRequest,
                                     stack_factory: Callable[..., Stack], broker: str) -> None:
    """4. The broker goes away abruptly while jobs run and are being submitted, and comes back
    two seconds later on the same port with its data. Workers reconnect; nothing is lost."""
    stack = stack_factory(broker)
    stack.start_all(concurrency=3)
    worker = stack.workers[0]
    ledger = Ledger(stack)
    work = {"sleep_s": 0.6, "steps": 3}
    with stack.client() as client:
        for _ in range(8):
            ledger.submit(client, "fault_work", work)
    wait_for(lambda: sum(r["status"] == "running" for r in stack.rows(ledger.accepted)
                         .values()) >= 2, 20, "jobs running")
    thread, latencies = submit_in_background(ledger, stack, 8, 0.5, work)
    time.sleep(0.6)
    back = broker_down(stack)
    fault_at = time.monotonic()
    time.sleep(2)
    back()
    thread.join(60)
    assert not thread.is_alive()
    assert len(ledger.accepted) == 16, f"refused: {dict(ledger.refused)}"
    conclude(request, ledger, "4 broker restart mid-run", since=fault_at, timeout_s=60,
             max_submit_s=round(max(latencies), 2))
    assert worker.alive(), "the worker died when the broker went away"


@pytest.mark.parametrize("broker", BROKERS)
def test_broker_down_during_submissions(request: pytest.FixtureRequest,
                                        stack_factory: Callable[..., Stack],
                                        broker: str) -> None:
    """5. With the broker down the API still answers 202 (the row is committed); once the
    broker is back the scheduler dispatches every one of those jobs."""
    stack = stack_factory(broker)
    stack.start_all(concurrency=2)
    worker = stack.workers[0]
    ledger = Ledger(stack)
    with stack.client() as client:
        # One job runs through the outage (its message unacknowledged) while the worker's
        # other slot waits on the queue.
        first = ledger.submit(client, "fault_work", {"sleep_s": 3, "steps": 6})
    assert first
    wait_for(lambda: stack.rows([first])[first]["status"] == "running", 20, "the first job")
    time.sleep(0.3)
    back = broker_down(stack)
    fault_at = time.monotonic()
    latencies = []
    with stack.client(timeout_s=30) as client:
        for _ in range(10):
            t = time.monotonic()
            assert ledger.submit(client, "fault_work", {"sleep_s": 0.2, "steps": 1}), \
                f"refused while the broker is down: {dict(ledger.refused)}"
            latencies.append(time.monotonic() - t)
    rows = stack.rows(ledger.accepted)
    assert sum(r["status"] == "queued" for r in rows.values()) == 10
    assert worker.alive(), "the worker died when the broker went away"
    back()
    back_at = time.monotonic()
    conclude(request, ledger, "5 broker down during submits", since=back_at, timeout_s=40,
             max_submit_s=round(max(latencies), 2), outage_s=round(back_at - fault_at, 2))
    assert max(latencies) < 10, latencies
    assert worker.alive(), "the worker died when the broker went away"


def test_messages_held_for_a_countdown_come_back_after_a_redis_restart(
        request: pytest.FixtureRequest, stack_factory: Callable[..., Stack]) -> None:
    """5b. A worker holds the messages of jobs waiting for their countdown (a retry, a quota
    wait) unacknowledged; Redis keeps them in its ``unacked`` hash, which it empties by
    itself only after the visibility timeout (hours). When the broker restarts under the
    worker, the messages it held go back to their queues at once, so those jobs run when
    their countdown ends rather than at the scheduler's late re-send (120 s here)."""
    stack = stack_factory("redis")
    stack.start_all(concurrency=2)
    worker = stack.workers[0]
    ledger = Ledger(stack)
    with stack.client() as client:
        for _ in range(3):
            ledger.submit(client, "fault_work", {"sleep_s": 0.1, "steps": 1, "retry_in_s": 6})
    import redis

    broker = redis.Redis.from_url(stack.broker_url)
    # the first attempts are over and the worker holds the three retries for their countdown
    wait_for(lambda: len(stack.exec_log.starts()) == 3 and broker.hlen("unacked") == 3, 20,
             "three retries held by the worker")
    broker.close()
    back = broker_down(stack)
    fault_at = time.monotonic()
    time.sleep(1)
    back()
    verdict = conclude(request, ledger, "5b countdown messages across a Redis restart",
                       since=fault_at, timeout_s=40)
    assert verdict.statuses == {"succeeded": 3}, verdict.statuses
    assert all(n == 2 for n in stack.exec_log.starts().values()), stack.exec_log.starts()
    assert "put back" in worker.text(), "the held messages came back some other way"
    assert worker.alive(), "the worker died when the broker went away"


def steal_message(stack: Stack, queue: str) -> Any:
    """Take one message off ``queue`` and acknowledge it, as a connection dropped between
    the broker's hand-over and the worker's record of it would lose it."""
    from kombu import Connection, Queue

    url = stack.broker_url + ("/0" if stack.broker == "redis" else "")
    with Connection(url, connect_timeout=3) as conn:
        # no_ack: taken off the queue for good; Queue.get gives a kombu message on both
        # transports (a bare basic_get on py-amqp gives its own kind)
        message = Queue(queue).bind(conn.default_channel).get(no_ack=True)
        assert message is not None, f"no message on {queue}"
        return message.payload


@pytest.mark.parametrize("broker", BROKERS)
def test_a_message_lost_in_flight_is_sent_again_once_later_ones_are_claimed(
        request: pytest.FixtureRequest, stack_factory: Callable[..., Stack],
        broker: str) -> None:
    """5c. A message the broker handed over but no worker received (its connection dropped
    in between) is gone from the broker while its job waits. Once the queue has delivered
    messages sent after it, the scheduler knows (the delivery frontier) and sends it again,
    long before the late re-send for a queue that stopped moving (120 s here)."""
    stack = stack_factory(broker, env={"TIDEGATE_REDISPATCH_BEHIND_S": "2"})
    stack.start_api(wait=False)
    stack.start_beat(wait=False)
    stack.wait_api()
    ledger = Ledger(stack)
    work = {"sleep_s": 0.1, "steps": 1}
    with stack.client() as client:
        lost = ledger.submit(client, "fault_work", work)
        wait_for(lambda: stack.rows([lost])[lost]["status"] == "queued", 10, "the job queued")
        time.sleep(0.5)
        args, _kwargs, _embed = steal_message(stack, "medium")
        assert args[0] == lost
        time.sleep(2.5)  # the next ones are sent more than REDISPATCH_BEHIND_S later
        for _ in range(3):
            ledger.submit(client, "fault_work", work)
    started = time.monotonic()
    stack.start_worker(concurrency=2)
    verdict = conclude(request, ledger, "5c message lost in flight", since=started,
                       timeout_s=40)
    assert verdict.statuses == {"succeeded": 4}, verdict.statuses
    beat = stack.beats[0].text()
    assert "redispatched=1" in beat, beat[-2000:]


def publish_poison(stack: Stack, victim: str) -> list[str]:
    """Put undeliverable messages about ``victim`` on the medium queue, straight through
    kombu and a bare Celery client (no Tidegate code involved)."""
    import uuid

    from celery import Celery
    from kombu import Connection, Exchange, Queue

    from tidegate.adapters.celery_app import RUN_JOB

    url = stack.broker_url + ("/0" if stack.broker == "redis" else "")
    app = Celery("poison", broker=url, set_as_current=False)
    app.conf.task_serializer = "json"
    sent = []

    def send(name: str, **kw: Any) -> None:
        app.send_task(kw.pop("task", RUN_JOB), queue="medium", routing_key="medium",
                      exchange="tidegate", **kw)
        sent.append(name)

    send("pickle body", args=[victim], serializer="pickle")
    send("unknown task", task="tidegate.no_such_task", args=[victim])
    send("int arg", args=[12345])
    send("dict arg", args=[{"job_id": victim}])
    send("no args", args=[])
    send("two args", args=[victim, "extra"])
    send("unexpected kwarg", args=[victim], kwargs={"bogus": 1})
    send("oversized id", args=["x" * 5000])
    exchange = Exchange("tidegate", type="direct")
    queue = Queue("medium", exchange, routing_key="medium")
    headers = {"lang": "py", "task": RUN_JOB, "id": str(uuid.uuid4()), "retries": 0,
               "root_id": None, "parent_id": None, "group": None}
    with Connection(url, connect_timeout=3) as conn:
        producer = conn.Producer()

        def raw(name: str, body: Any, **kw: Any) -> None:
            producer.publish(body, exchange=exchange, routing_key="medium", declare=[queue],
                             **kw)
            sent.append(name)

        raw("garbage bytes as json", b"\x00\xff{not json", content_type="application/json",
            content_encoding="utf-8", headers=dict(headers, id=str(uuid.uuid4())))
        raw("json, no task header", {"hello": "world"}, serializer="json")
        raw("run_job, body not a list", "oops", serializer="json",
            headers=dict(headers, id=str(uuid.uuid4())))
        raw("run_job, bad eta", [[victim], {}, {}], serializer="json",
            headers=dict(headers, id=str(uuid.uuid4()), eta="not-a-date"))
        raw("run_job, body of two items", [[victim], {}], serializer="json",
            headers=dict(headers, id=str(uuid.uuid4())))
        raw("run_job, bad expires", [[victim], {}, {}], serializer="json",
            headers=dict(headers, id=str(uuid.uuid4()), expires="someday"))
        raw("run_job, bad timelimit", [[victim], {}, {}], serializer="json",
            headers=dict(headers, id=str(uuid.uuid4()), timelimit="soon"))
        raw("run_job, kwargs not a dict", [[victim], ["k"], {}], serializer="json",
            headers=dict(headers, id=str(uuid.uuid4())))
        raw("unknown content type", b"\x80\x04garbage", content_type="application/x-mystery",
            content_encoding="binary", headers=dict(headers, id=str(uuid.uuid4())))
    return sent


@pytest.mark.parametrize("broker", BROKERS)
def test_poison_messages(request: pytest.FixtureRequest, stack_factory: Callable[..., Stack],
                         broker: str) -> None:
    """9. Poison messages go straight to the queue (pickle, unknown task, garbage body,
    run_job with non-string, missing or extra arguments, no headers, bad eta, unknown content
    type). The worker survives and keeps processing; a job whose only message was poisoned
    completes through the scheduler's re-send."""
    stack = stack_factory(broker, env={"TIDEGATE_REDISPATCH_AFTER_S": "5"})
    stack.start_api(wait=False)
    stack.start_beat(wait=False)
    stack.wait_api()
    ledger = Ledger(stack)
    with stack.client() as client:
        victim = ledger.submit(client, "fault_work", {"sleep_s": 0.1, "steps": 1,
                                                      "tag": "victim"})
    assert victim
    from kombu import Connection

    url = stack.broker_url + ("/0" if broker == "redis" else "")
    import sqlalchemy as sa

    from tidegate.adapters.sql.tables import jobs

    def sent() -> bool:  # the API sends just after the 202, then marks the row
        with stack.engine.connect() as db:
            return db.execute(sa.select(jobs.c.dispatched_at)
                              .where(jobs.c.id == victim)).scalar_one() is not None

    wait_for(sent, 10, "the victim's message sent")
    with Connection(url, connect_timeout=3) as conn:
        assert conn.default_channel.queue_purge("medium") == 1  # the victim's one message
    poison = publish_poison(stack, victim)
    fault_at = time.monotonic()
    worker = stack.start_worker(concurrency=2)
    with stack.client() as client:
        others = [ledger.submit(client, "fault_work", {"sleep_s": 0.1, "steps": 1})
                  for _ in range(5)]
    wait_for(lambda: all(r["status"] == "succeeded" for r in stack.rows(others).values()), 20,
             "jobs behind the poison")
    verdict = conclude(request, ledger, "9 poison messages", since=fault_at, timeout_s=30,
                       poison=len(poison))
    assert worker.alive(), "the worker died on a poison message"
    assert verdict.statuses == {"succeeded": 6}
    assert stack.exec_log.starts()[victim] == 1
