"""The Celery application factory, shared by the API (which only sends) and the workers."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from ..config import Settings
from ..core.statuses import QUEUES
from .dead_peer import redis_client_options

RUN_JOB = "tidegate.run_job"
# A header of each run_job message: when it was sent (epoch seconds, the sender's clock).
SENT_HEADER = "tg_sent"


def create_celery(settings: Settings, *, name: str = "tidegate") -> Celery:
    broker = settings.broker()
    app = Celery(name, broker=broker, set_as_current=False)
    exchange = Exchange("tidegate", type="direct")
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
        task_queues=[Queue(q, exchange, routing_key=q) for q in QUEUES],
        task_default_queue="medium",
        task_default_exchange="tidegate",
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
