"""The Celery application factory, shared by the API (which only sends) and the workers."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from ..config import Settings
from ..core.statuses import QUEUES

RUN_JOB = "tidegate.run_job"


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
        worker_prefetch_multiplier=1,
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
        broker_heartbeat=30,
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
