"""`tidegate beat`: as the only leader, runs the schedules' due slots, the sweep and the
retention purge.

Each due slot of a schedule becomes one job, written with its (schedule, slot) run row in one
transaction (adapters/sql/schedules.py): the leader lock keeps a second scheduler idle, and
the run row's key makes a slot run once even when two briefly both believe they lead.

The maintenance runs in this process rather than as Celery tasks, so that it still works
when every worker is busy, crashed or stopped: that is exactly when the sweep is needed.
Between sweeps, every LIVENESS_TICK_S, the leader asks the shared Redis which workers stopped
stamping themselves alive (adapters/liveness.py) and takes their jobs over at once, without
waiting for the leases to run out; that check touches the database only when one died.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time

import redis

from ..adapters.leader import LeaderLock
from ..adapters.liveness import DeadWorkerWatch, LivenessRegistry
from ..adapters.redis_client import redis_client
from ..adapters.redis_keys import BEAT_LEADER
from ..adapters.webhook_sender import SenderConfig, WebhookSender
from ..config import Env, Settings
from ..core.errors import Unavailable
from ..core.schedules import Schedule, ScheduleRunner, sync_settings
from ..core.sweep import SweepConfig, Sweeper
from ..wiring import Container, build_container
from .transport import restore_held

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
LIVENESS_TICK_S = 1.0


def run_scheduler(settings: Settings, *, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (tests)
            break
    container = build_container(settings)
    sweeper = Sweeper(container.service, SweepConfig(
        dispatch_grace_s=settings.dispatch_grace_s,
        redispatch_after_s=settings.redispatch_after_s,
        retention_days=settings.retention_days,
        failed_retention_days=settings.failed_retention_days,
        behind_s=settings.redispatch_behind_s), frontier=container.frontier)
    client = redis_client(settings.state_redis(), socket_timeout=5,
                                  socket_connect_timeout=3)
    lock = LeaderLock(client, BEAT_LEADER, ttl_s=max(15.0, settings.sweep_interval_s * 3))
    watch = DeadWorkerWatch(LivenessRegistry(client))
    leader = threading.Event()  # set while this scheduler leads: only then it sends webhooks
    webhooks = threading.Thread(target=_send_webhooks, args=(settings, container, leader, stop),
                                name="webhooks", daemon=True)
    webhooks.start()
    wanted = container.settings_schedules()  # a wrong entry stops the start, named
    runner = ScheduleRunner(container.schedule_store, container.service,
                            grace_s=settings.schedule_grace_s, log=log.warning)
    synced = False
    tick = min(settings.sweep_interval_s, LIVENESS_TICK_S)
    leading = False
    last_purge = 0.0
    next_sweep = 0.0
    log.info("scheduler started: sweep every %.0fs, dead workers looked for every %.0fs",
             settings.sweep_interval_s, tick)
    try:
        while not stop.is_set():
            try:
                now_leading = lock.acquire_or_renew()
            except redis.RedisError as exc:
                log.warning("leader lock unavailable (%s); standing by", type(exc).__name__)
                now_leading = False
            if now_leading != leading:
                log.info("scheduler %s", "is the leader" if now_leading else "is standing by")
                leading = now_leading
                watch.reset()
                (leader.set if leading else leader.clear)()
            if leading:
                synced = _run_schedules(runner, wanted, synced)
            if leading and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.sweep_interval_s
                try:
                    sweeper.sweep()
                    if time.monotonic() - last_purge > PURGE_EVERY_S:
                        sweeper.purge()
                        last_purge = time.monotonic()
                except Unavailable as exc:
                    log.warning("sweep skipped: %s", exc.message)
                except Exception:
                    log.exception("sweep failed")
            if leading:
                _recover_dead_workers(watch, sweeper, container)
            stop.wait(tick)
    finally:
        stop.set()
        webhooks.join(timeout=30)
        with contextlib.suppress(redis.RedisError):
            lock.release()
        container.close()
        log.info("scheduler stopped")


def _run_schedules(runner: ScheduleRunner, wanted: list[Schedule], synced: bool) -> bool:
    """One pass over the schedules (the settings file's written first, once); returns
    whether that file's schedules are in the database."""
    try:
        if not synced:
            sync_settings(runner.store, wanted)
            synced = True
        created = runner.run_due()
        if created:
            log.info("schedules: %d job(s) created", created)
    except Unavailable as exc:
        log.warning("schedules not run this pass: %s", exc.message)
    except Exception:
        log.exception("running the schedules failed")
    return synced


def _send_webhooks(settings: Settings, container: Container, leader: threading.Event,
                   stop: threading.Event) -> None:
    """The outbox sender's loop: due deliveries every TIDEGATE_WEBHOOK_POLL_S while leading."""
    sender = WebhookSender(container.webhook_store, SenderConfig(
        retry_base_s=settings.webhook_retry_base_s, retry_cap_s=settings.webhook_retry_cap_s,
        give_up_s=settings.webhook_give_up_s, timeout_s=settings.webhook_timeout_s,
        allow_http=settings.env is Env.DEV, allow_private=settings.webhook_allow_private))
    try:
        while not stop.is_set():
            sent = 0
            if leader.is_set():
                try:
                    sent = sender.run_once()
                except Unavailable as exc:
                    log.warning("webhook deliveries skipped: %s", exc.message)
                except Exception:
                    log.exception("webhook deliveries failed")
            if not sent:  # a full batch: look again at once
                stop.wait(settings.webhook_poll_s)
    finally:
        sender.close()


def _recover_dead_workers(watch: DeadWorkerWatch, sweeper: Sweeper,
                          container: Container) -> None:
    try:
        dead = watch.check()
        if dead:
            sweeper.recover_dead_workers(dead)
            _put_back_held_messages(container, dead)
            watch.forget(dead)  # only once their jobs were taken over
    except redis.RedisError as exc:  # the leases still run out; the sweep takes over then
        log.warning("liveness check skipped: %s: %s", type(exc).__name__, exc)
    except Unavailable as exc:
        log.warning("dead workers' jobs not taken over yet: %s", exc.message)
    except Exception:
        log.exception("taking over dead workers' jobs failed")


def _put_back_held_messages(container: Container, owners: set[str]) -> None:
    """On a Redis broker, the messages dead workers received and had not finished go back to
    their queues now (worker/transport.py); RabbitMQ did that when their connections closed."""
    if not container.settings.broker().startswith(("redis://", "rediss://")):
        return
    try:
        with container.celery.connection_for_write() as conn:
            channel = conn.default_channel
            for owner in sorted(owners):
                restore_held(channel, owner)
    except Exception as exc:  # the scheduler's late re-send still covers them
        log.warning("dead workers' messages not put back (%s: %s)", type(exc).__name__, exc)
