"""The worker's Celery app: the shared configuration plus the one task, ``tidegate.run_job``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from billiard.process import active_children
from celery import Celery, Task, signals

from .. import logs
from ..adapters import metrics
from ..adapters.celery_app import RUN_JOB, SENT_HEADER, create_celery
from ..config import Settings
from ..core.errors import Unavailable, public_summary
from ..core.models import Job
from . import runtime
from .timelimit import TimeLimit

log = logging.getLogger(__name__)

# Sent by a stopping prefork worker to its pool children when the shutdown grace is over
# (SIGTERM and SIGUSR1 already mean something to a pool child; SIGUSR2 does not).
STOP_SIGNAL = signal.SIGUSR2

# A delivery that fails for another reason than an unreachable dependency (a store error, a
# bug before the claim) is sent again this many times in all, with doubling delays, and then
# the job fails with `delivery_failed` instead of waiting for the scheduler's late re-send.
DELIVERY_ATTEMPTS = 5
DELIVERY_BACKOFF_BASE_S = 1.0
DELIVERY_BACKOFF_CAP_S = 30.0


def _backoff(n: int) -> float:
    """The wait before sending a delivery again for the (n+1)th time."""
    return float(min(DELIVERY_BACKOFF_CAP_S, DELIVERY_BACKOFF_BASE_S * 2 ** min(n, 10)))


def consumer_timeout_warning(settings: Settings) -> str | None:
    """RabbitMQ closes the channel of a consumer that holds an unacknowledged message longer
    than its `consumer_timeout` (30 min by default); with late acks that is a job running that
    long, and every message of the worker comes back. Not learnable over AMQP, so it is a
    setting (TIDEGATE_BROKER_CONSUMER_TIMEOUT_S); say so when a job may outlive it."""
    if not settings.broker().startswith(("amqp://", "amqps://", "pyamqp://")):
        return None
    hard_limit = settings.job_time_limit_s + 60
    if hard_limit < settings.broker_consumer_timeout_s:
        return None
    return (f"the job hard time limit ({hard_limit}s: TIDEGATE_JOB_TIME_LIMIT_S + 60) is not "
            f"below RabbitMQ's consumer_timeout ({settings.broker_consumer_timeout_s}s, "
            f"TIDEGATE_BROKER_CONSUMER_TIMEOUT_S): a job running that long makes RabbitMQ close "
            f"the worker's channel; lower the time limit or raise consumer_timeout")


def _fields(job: Job, **more: object) -> dict[str, object]:
    return logs.job_fields(job_id=job.id, type=job.type, attempt=job.attempts,
                           tenant=job.tenant, **more)


def _record(job: Job, kind: str, ran_s: float, delay_s: float, after: Job | None) -> None:
    """The lifecycle line and counters of one claimed delivery, by the names Celery setups
    already grep for and chart (task_completed, task_failed, task_retrying)."""
    duration = round(ran_s, 3)
    if kind == "succeeded":
        metrics.jobs_completed.labels(type=job.type).inc()
        metrics.job_duration.labels(type=job.type).observe(ran_s)
        log.info("task_completed", extra=_fields(job, duration_s=duration))
    elif kind == "failed":
        code = (after.error or {}).get("code", "unknown") if after is not None else "unknown"
        metrics.jobs_failed.labels(type=job.type, code=code).inc()
        metrics.job_duration.labels(type=job.type).observe(ran_s)
        log.warning("task_failed", extra=_fields(
            job, duration_s=duration, code=code,
            error=(after.error or {}).get("message", "") if after is not None else ""))
    elif kind == "cancelled":
        metrics.job_duration.labels(type=job.type).observe(ran_s)
        log.info("task_cancelled", extra=_fields(job, duration_s=duration))
    elif kind == "retry":
        metrics.jobs_retried.labels(type=job.type).inc()
        reason = (after.error or {}).get("code", "") if after is not None else ""
        log.warning("task_retrying", extra=_fields(job, duration_s=duration,
                                                   delay_s=round(delay_s, 3), reason=reason))
    else:  # lost: another delivery owns the job now
        log.warning("task_lost", extra=_fields(job, duration_s=duration))


def create_worker_app(settings: Settings) -> Celery:
    runtime.configure(settings)
    app = create_celery(settings)
    if settings.broker().startswith(("redis://", "rediss://")):
        # (rediss://: TLS as broker_use_ssl says, which create_celery always sets for it)
        app.conf.broker_transport = "tidegate.worker.transport:RedisTransport"
    # Celery gives up after 100 reconnection attempts (about an hour) and the worker exits; an
    # outage that long is no reason for a worker to need restarting by hand.
    app.conf.broker_connection_max_retries = None
    if (warning := consumer_timeout_warning(settings)) is not None:
        log.warning("%s", warning)
    # Celery enforces its time limits in prefork children only.
    enforce_time_limit = settings.worker_pool != "prefork"

    # max_retries=None on the task itself: passed to retry() it means "the default" (3), after
    # which the task failed and its message was acknowledged, leaving the job to wait.
    @app.task(name=RUN_JOB, bind=True, shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True, max_retries=None,
              Strategy="tidegate.worker.strategy:guarded")
    def run_job(self: Task, job_id: str, failures: int = 0) -> str:
        """Run one delivery of a job. The row records every outcome; when the database cannot
        be reached the delivery is sent again later instead of being dropped, and a delivery
        that keeps failing for another reason ends the job `failed` (`delivery_failed`)."""
        if not isinstance(job_id, str) or len(job_id) > 64 or type(failures) is not int:
            log.error("dropping malformed run_job message: %r", job_id)
            return "malformed"
        try:
            return _deliver(job_id, getattr(self.request, SENT_HEADER, None))
        except Unavailable as exc:
            # Acknowledging this message now would leave a job that was never claimed
            # `queued` until the scheduler's late re-send (REDISPATCH_AFTER_S). A job claimed
            # before the outage comes back through its lease; the extra delivery is harmless.
            delay = _backoff(self.request.retries or 0)
            log.warning("job %s: %s; delivering it again in %.0fs", job_id, exc.message, delay)
            raise self.retry(countdown=delay) from None
        except Exception as exc:
            failures += 1
            if failures < DELIVERY_ATTEMPTS:
                delay = _backoff(failures - 1)
                log.warning("job %s: delivery failed (%s: %s); delivering it again in %.1fs "
                            "(%d of %d)", job_id, type(exc).__name__, exc, delay, failures,
                            DELIVERY_ATTEMPTS, exc_info=True)
                raise self.retry(countdown=delay, kwargs={"failures": failures}) from None
            return _fail_delivery(job_id, failures, exc)

    def _fail_delivery(job_id: str, failures: int, exc: Exception) -> str:
        log.error("job %s: delivery failed %d times: %s: %s", job_id, failures,
                  type(exc).__name__, exc, exc_info=exc)
        # What the tenant sees: summarised (no hosts, paths or traces); the log has it all.
        message = f"delivery failed {failures} times: {public_summary(exc)}"
        try:
            failed = runtime.get_runtime().container.store.fail_waiting(
                job_id, code="delivery_failed", message=message)
        except Exception:  # the store itself is broken: the scheduler's late re-send remains
            log.exception("job %s: could not record the delivery failure", job_id)
            return "delivery_failed"
        if not failed:  # claimed (its lease decides), finished, or gone
            log.warning("job %s: not waiting any more; left as it is", job_id)
        return "delivery_failed"

    def _deliver(job_id: str, sent_at: object = None) -> str:
        # Every line logged while this delivery runs (the handler's own, the runner's, the
        # LLM gateway's) carries the job's fields, known once the job is claimed.
        with logs.job_scope(job_id=job_id) as scope:
            return _deliver_in_scope(job_id, sent_at, scope)

    def _deliver_in_scope(job_id: str, sent_at: object, scope: dict[str, object]) -> str:
        rt = runtime.get_runtime()
        started = time.monotonic()
        claimed: list[Job] = []

        def on_claim(job: Job, pin: object = None) -> None:
            claimed.append(job)
            scope.update(type=job.type, attempt=job.attempts, tenant=job.tenant)
            log.info("task_started", extra=_fields(job))
            _advance_frontier(rt, job, sent_at)
            if callable(pin):
                pin(job)

        if enforce_time_limit:
            with TimeLimit(rt, job_id, settings.job_time_limit_s) as limit:
                outcome = rt.runner.run(job_id, on_claim=lambda j: on_claim(j, limit.pin))
        else:
            outcome = rt.runner.run(job_id, on_claim=on_claim)
        ran_s = time.monotonic() - started
        metrics.job_outcomes.labels(type=outcome.job_type or "unknown",
                                    outcome=outcome.kind).inc()
        metrics.job_seconds.labels(type=outcome.job_type or "unknown").observe(ran_s)
        after = None
        if outcome.kind == "retry":
            after = rt.container.store.get(job_id)
        elif outcome.kind == "failed" and claimed:
            try:  # only for the error code of the log line and counter
                after = rt.container.store.get(job_id)
            except Exception:
                log.debug("job %s: failed, error code not read back", job_id, exc_info=True)
        if claimed:
            _record(claimed[0], outcome.kind, ran_s, outcome.delay_s, after)
        if outcome.kind == "retry":
            service = rt.container.service
            job = after
            if job is not None:
                # If this send fails, the sweep sends it (dispatched_at stays empty). A quota
                # wait counts from the limiter's answer, not from now.
                service.dispatch(job, countdown_s=outcome.countdown_s())
        return outcome.kind

    def _advance_frontier(rt: runtime.Runtime, job: Job, sent_at: object) -> None:
        # Only a claimed delivery moves it: a message dropped as a duplicate says nothing
        # about the order of its queue. Never worth failing a job over.
        frontier = rt.container.frontier
        if frontier is None or type(sent_at) not in (int, float):
            return
        try:
            frontier.advance(job.priority.value, float(sent_at))  # type: ignore[arg-type]
        except Exception as exc:
            log.debug("delivery frontier not moved (%s)", type(exc).__name__)

    @signals.setup_logging.connect(weak=False)
    def _logging(loglevel: object = None, **_: object) -> None:
        # Connected, so Celery leaves the root logger alone: its lines (and ours) come out in
        # TIDEGATE_LOG_FORMAT, redacted, like the API's and the scheduler's.
        logs.configure(settings.log_format, loglevel if isinstance(loglevel, str | int)
                       else "INFO")

    @signals.worker_shutting_down.connect(weak=False)
    def _grace_then_hand_back(**_: object) -> None:
        # Celery's warm shutdown waits for running jobs forever; LLM jobs can run for minutes.
        # After the grace period every handler stops at its next checkpoint and its job goes
        # back to the queue (attempt not spent), so nothing stays `running` without a lease.
        def expire() -> None:
            log.warning("shutdown grace (%.0fs) over: handing running jobs back",
                        settings.shutdown_grace_s)
            rt = runtime.current()
            if rt is not None:
                rt.runner.stopping.set()
            # Prefork: the jobs run in the pool's children, which have runtimes of their own.
            for child in active_children():
                with contextlib.suppress(OSError):
                    os.kill(child.pid, STOP_SIGNAL)

        timer = threading.Timer(settings.shutdown_grace_s, expire)
        timer.daemon = True
        timer.start()

    @signals.worker_init.connect(weak=False)
    def _announce(**_: object) -> None:
        log.info("broker connection: retried without limit whenever it is lost")
        # From the start, not the first job: `tidegate worker --check` looks for this.
        runtime.start_liveness()

    @signals.worker_process_init.connect(weak=False)
    def _hand_back_on_signal(**_: object) -> None:
        # A prefork child owns the leases of the jobs it runs: it says it is alive itself.
        runtime.start_liveness()

        # In a prefork child: the parent's grace is over, stop this child's job.
        def stop(*_: object) -> None:
            rt = runtime.current()
            if rt is not None:
                rt.runner.stopping.set()

        signal.signal(STOP_SIGNAL, stop)

    return app
