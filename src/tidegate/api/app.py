"""create_app(): the FastAPI application, built from Settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from .. import __version__
from ..adapters.keycache import KeyAuthority
from ..adapters.limiter import RedisCalibrator, RedisLimiter
from ..adapters.queues import QueueInspector
from ..adapters.redis_keys import EVENTS_CHANNEL
from ..adapters.sql.events import EventLog
from ..config import Settings, load_settings
from ..core.batches import Batches
from ..core.errors import ConfigurationError
from ..core.outbox import SendOutbox
from ..wiring import Container, build_container
from . import errors, openapi
from .body_limit import BodyLimitMiddleware
from .deps import storable_body
from .event_hub import EventHub
from .event_metrics import DeliveriesCollector
from .request_metrics import RequestMetricsMiddleware
from .routes import (
    admin,
    aliases,
    dashboard,
    events,
    job_types,
    jobs,
    limits,
    openai_compat,
    schedules,
    system,
    usage,
    webhooks,
)

log = logging.getLogger(__name__)

# Database connections kept per API process (as many again in a burst). Requests run in a
# thread pool of 40: with the default 5 kept, a busy process opened and closed a connection
# for many of its requests.
API_DB_POOL_SIZE = 10


class ApiContainer(Container):
    @cached_property
    def outbox(self) -> SendOutbox | None:
        return SendOutbox(self.dispatcher, self.store)

    @cached_property
    def event_wakeups(self) -> Batches[str] | None:
        """Streams' wake-ups from a thread, one PUBLISH for the commits of the last moment,
        instead of one per commit on the request path."""
        publisher = self.event_publisher
        if publisher is None:
            return None

        def publish(job_ids: list[str]) -> int:
            publisher(job_ids)  # reports its own failures
            return len(job_ids)

        return Batches(publish, name="event-wakeups")

    @cached_property
    def on_events(self) -> Callable[[list[str]], None] | None:
        wakeups = self.event_wakeups
        return None if wakeups is None else wakeups.add_all

    @cached_property
    def queue_inspector(self) -> QueueInspector:
        return QueueInspector(self.celery, ttl_s=self.settings.queues_cache_s)

    @cached_property
    def metrics_registry(self) -> CollectorRegistry:
        from ..adapters.metrics import SystemCollector
        from .routes.limits import lane_report

        registry = CollectorRegistry()
        registry.register(SystemCollector(counts=self.store.count_by_status,
                                          queues=self.queue_inspector.stats,
                                          lanes=lambda: lane_report(self.limiter)))
        registry.register(DeliveriesCollector(self.webhook_store.counts))
        return registry

    @cached_property
    def keys(self) -> KeyAuthority:
        """API keys, cached per process; a change anywhere is seen here within a second."""
        return KeyAuthority(self.store, self.settings.secret_key)

    @cached_property
    def event_log(self) -> EventLog:
        return EventLog(self.engine)

    @cached_property
    def event_hub(self) -> EventHub:
        """The one reader of the event table for every stream this process serves."""
        try:
            redis_url: str | None = self.settings.state_redis()
        except ConfigurationError:
            redis_url = None
        return EventHub(self.event_log, redis_url=redis_url, channel=EVENTS_CHANNEL,
                        poll_s=self.settings.events_poll_s, key_valid=self.keys.is_valid,
                        recheck_s=self.settings.stream_recheck_s)

    @cached_property
    def limiter(self) -> RedisLimiter:
        from ..adapters.redis_client import redis_client

        return RedisLimiter(redis_client(self.settings.state_redis(), socket_timeout=3,
                                         socket_connect_timeout=2))

    @cached_property
    def calibration(self) -> RedisCalibrator:
        """The lanes' learned token ratios, shown by ``GET /v1/limits``."""
        import redis

        return RedisCalibrator(redis.Redis.from_url(self.settings.state_redis(),
                                                    socket_timeout=3, socket_connect_timeout=2),
                               cache_s=0.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    base = build_container(settings)
    container = ApiContainer(settings=base.settings, registry=base.registry,
                             db_pool_size=API_DB_POOL_SIZE)
    _ = container.llm_config  # load it now: a bad LLM settings file stops the API at start-up
    if settings.auth == "off":
        log.warning("TIDEGATE_AUTH=off: every request is accepted as tenant 'local'")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if "event_hub" in container.__dict__:
            await container.event_hub.stop()
        container.close()

    app = FastAPI(
        title="Tidegate", version=__version__, lifespan=lifespan,
        dependencies=[Depends(storable_body)],
        description="Durable background LLM jobs. Submit, then poll, stream or get called "
                    "back. Authenticate with `Authorization: Bearer <api key>`.")
    app.state.container = container
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(job_types.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(system.router)
    app.include_router(limits.router)
    app.include_router(aliases.router)
    app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(schedules.router)
    app.include_router(openai_compat.router)
    dashboard.install(app)
    openapi.install(app, job_types=container.registry.names(),
                    bodies=[openai_compat.ChatCompletionRequest, openai_compat.EmbeddingRequest])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware)  # outermost: counts the 413s too
    return app
