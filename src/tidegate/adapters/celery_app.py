"""The Celery application factory, shared by the API (which only sends) and the workers."""

from __future__ import annotations

import ssl
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from ..config import Settings
from ..core.statuses import QUEUES
from .dead_peer import redis_client_options

RUN_JOB = "tidegate.run_job"
# A header of each run_job message: when it was sent (epoch seconds, the sender's clock).
SENT_HEADER = "tg_sent"


VERIFY_MODES = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
                "none": ssl.CERT_NONE}


def broker_tls(settings: Settings, broker: str) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` for a rediss:// or amqps:// broker: certificates verified
    unless TIDEGATE_TLS_VERIFY says otherwise (kombu's own default for rediss:// is not to
    verify at all), with the CA and client certificate from the settings."""
    mode = VERIFY_MODES[settings.tls_verify]
    files = (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
    ca, cert, key = (str(f) if f is not None else None for f in files)
    if broker.startswith("rediss://"):
        return {"ssl_cert_reqs": mode, "ssl_ca_certs": ca, "ssl_certfile": cert,
                "ssl_keyfile": key}
    if broker.startswith("amqps://"):
        # py-amqp's keys; it checks the host name against the certificate when verifying
        return {k: v for k, v in {"cert_reqs": mode, "ca_certs": ca, "certfile": cert,
                                  "keyfile": key}.items() if v is not None}
    return None


def task_queues(settings: Settings, broker: str) -> list[Queue]:
    """high, medium, low. As RabbitMQ quorum queues on a topic exchange: Celery delays a
    countdown (a retry's backoff) there with RabbitMQ's native delayed delivery, which needs
    a topic exchange; quorum queues cannot hold back messages for a worker's countdown the
    way classic ones do (no global QoS). Its own name: an existing exchange keeps its type."""
    if settings.broker_quorum_queues and broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        exchange = Exchange("tidegate.quorum", type="topic")
        return [Queue(q, exchange, routing_key=q, queue_arguments={"x-queue-type": "quorum"})
                for q in QUEUES]
    return [Queue(q, Exchange("tidegate", type="direct"), routing_key=q) for q in QUEUES]


def create_celery(settings: Settings, *, name: str = "tidegate") -> Celery:
    broker = settings.broker()
    app = Celery(name, broker=broker, set_as_current=False)
    queues = task_queues(settings, broker)
    transport_options: dict[str, object] = {}
    if broker.startswith(("redis://", "rediss://")):
        transport_options = {
            # Above the longest job: Redis re-delivers unacked messages after this; the job
            # lease (30 s) is the first line of recovery, this only the second.
            "visibility_timeout": settings.visibility_timeout_s,
            # Always take from high before medium before low.
            "queue_order_strategy": "priority",
            # A synchronous command (a publish, an ack) on a connection to a vanished Redis
            # fails instead of waiting forever; BRPOP's own wait is 1 s, well below.
            "socket_timeout": 10,
            **redis_client_options(),
        }
    app.conf.update(
        task_queues=queues,
        task_default_queue="medium",
        task_default_exchange=queues[0].exchange.name,
        task_default_exchange_type=queues[0].exchange.type,
        broker_use_ssl=broker_tls(settings, broker),
        task_default_routing_key="medium",
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,  # the job row holds results
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        # After a broker reconnect Celery would lower the prefetch count and raise it again
        # from the ack callback; with the threads pool that callback runs on a job thread and
        # its synchronous basic.qos reads the AMQP socket the consumer is reading too, which
        # desynchronises the connection (UnexpectedFrame) and stalls the worker until the next
        # heartbeat check. Over-fetching right after a reconnect is harmless with late acks.
        worker_enable_prefetch_count_reduction=False,
        task_time_limit=settings.job_time_limit_s + 60,
        task_soft_time_limit=settings.job_time_limit_s,
        broker_transport_options=transport_options,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        # Both ends notice a vanished peer after two missed heartbeats: the broker drops the
        # connection (requeueing its unacknowledged messages), the worker reconnects.
        broker_heartbeat=settings.broker_heartbeat_s or None,
        # A worker that comes back from a network cut reconnects under the same node name
        # while the broker may still hold its old connection: an exclusive control (pidbox)
        # queue would then refuse the new one (RESOURCE_LOCKED, and Celery stops the worker).
        # Shared, auto-deleted and expiring instead, it is declared again at once; an
        # abandoned node's queue goes after control_queue_expires (10 s).
        control_queue_exclusive=False,
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
