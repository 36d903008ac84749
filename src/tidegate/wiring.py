"""Builds the object graph (engine, store, broker, service) from Settings. No import-time work."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from celery import Celery

from .adapters.celery_app import create_celery
from .adapters.dispatch import CeleryDispatcher
from .adapters.event_bus import EventPublisher
from .adapters.frontier import RedisFrontier
from .adapters.sql import SqlJobStore, make_engine
from .adapters.sql.schedules import SqlScheduleStore
from .adapters.sql.webhooks import WebhookStore
from .adapters.webhook_secrets import SecretBox
from .config import Settings
from .core.errors import ConfigurationError, InvalidInput
from .core.outbox import SendOutbox
from .core.registry import Registry
from .core.schedules import Schedule, settings_schedules
from .core.service import JobService
from .core.spending import Spending
from .core.tenants import TenantGate
from .core.type_limits import TypeLimit, limits_for
from .llm_config import LLMConfig, LLMConfigError, load_llm_config

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    registry: Registry
    # Connections kept per process (as many again may be opened in a burst); a worker sizes it
    # from its concurrency, since every running job and its heartbeat each need one.
    db_pool_size: int = 5

    @cached_property
    def engine(self) -> sa.Engine:
        return make_engine(self.settings.database, pool_size=self.db_pool_size,
                           idle_in_transaction_s=self.settings.database_idle_in_transaction_s)

    @cached_property
    def store(self) -> SqlJobStore:
        return SqlJobStore(self.engine, on_events=self.on_events,
                           seal=self.secret_box.seal)

    @cached_property
    def on_events(self) -> Callable[[list[str]], None] | None:
        """What the store calls after committing events: the wake-up, at once."""
        return self.event_publisher

    @cached_property
    def secret_box(self) -> SecretBox:
        return SecretBox(self.settings.secret_key)

    @cached_property
    def webhook_store(self) -> WebhookStore:
        return WebhookStore(self.engine, self.secret_box)

    @cached_property
    def event_publisher(self) -> EventPublisher | None:
        """Wakes the API's event streams after each commit; None without a shared Redis
        (the streams then find events by polling)."""
        try:
            url = self.settings.state_redis()
        except ConfigurationError:
            return None
        return EventPublisher(url)

    @cached_property
    def celery(self) -> Celery:
        return create_celery(self.settings)

    @cached_property
    def dispatcher(self) -> CeleryDispatcher:
        return CeleryDispatcher(self.celery)

    @cached_property
    def llm_config(self) -> LLMConfig:
        """TIDEGATE_LLM_CONFIG over the shipped defaults, with the job types' own models and
        fallbacks where it names none; API and workers read the same."""
        path = self.settings.llm_config
        try:
            return load_llm_config(str(path) if path else None).with_job_defaults(
                self.registry.types())
        except LLMConfigError as exc:
            raise ConfigurationError(str(exc)) from None

    @cached_property
    def outbox(self) -> SendOutbox | None:
        """None: each job is sent and marked at once. The API batches them (core/outbox.py)."""
        return None

    @cached_property
    def service(self) -> JobService:
        from .jobs.common import LLM_CONFIG

        return JobService(self.store, self.dispatcher, self.registry,
                          secret=self.settings.secret_key,
                          validation_context={LLM_CONFIG: self.llm_config},
                          gate=self.tenant_gate, outbox=self.outbox,
                          estimator=self.eta_feed)

    @cached_property
    def eta_feed(self) -> Any:
        """Each waiting job's ETA, from the job table and the shared limiter's lanes (without
        a shared Redis the lanes' rates are unknown: only worker queues are estimated)."""
        from .adapters.eta_feed import EtaFeed
        from .adapters.limiter import RedisLimiter

        client = self.state_client
        config = self.llm_config
        registry = self.registry

        def lane_of(job_type: str, made_calls: bool | None) -> str | None:
            if job_type in config.jobs:
                return config.default_model(job_type)
            own = registry.get(job_type).model if job_type in registry else None
            if own is not None:
                return config.lane(own)
            return config.default_model(job_type) if made_calls else None

        return EtaFeed(self.engine, None if client is None else RedisLimiter(client), lane_of,
                       weights=self.tenant_gate.weight)

    @cached_property
    def frontier(self) -> RedisFrontier | None:
        """How far each queue's deliveries have got (see core.sweep); None without a shared
        Redis (the sweep then sends a job again only after its long wait)."""
        try:
            url = self.settings.state_redis()
        except ConfigurationError:
            return None
        from .adapters.redis_client import redis_client

        return RedisFrontier(redis_client(url, socket_timeout=5, socket_connect_timeout=3))

    @cached_property
    def schedule_store(self) -> SqlScheduleStore:
        return SqlScheduleStore(self.store)

    def settings_schedules(self) -> list[Schedule]:
        """The settings file's ``[schedules]``, validated against the job types."""
        from .jobs.common import LLM_CONFIG

        try:
            return settings_schedules(
                self.llm_config.schedules, registry=self.registry,
                validation_context={LLM_CONFIG: self.llm_config},
                default_tenant=self.settings.schedule_tenant)
        except InvalidInput as exc:
            raise ConfigurationError(f"invalid schedule in the settings file: {exc.message}"
                                     ) from None

    @cached_property
    def type_gate(self) -> Any | None:
        """Job types' limits, shared in Redis; None without one (then not enforced)."""
        from .adapters.type_limits import RedisTypeGate

        client = self.state_client
        return None if client is None else RedisTypeGate(client)

    def type_limits(self) -> Callable[[str], TypeLimit]:
        """Each job type's limits: its declaration, with ``[job_limits]`` over it."""
        overrides = {name: TypeLimit(x.per_minute, x.concurrency)
                     for name, x in self.llm_config.job_limits.items()}
        unknown = set(overrides) - set(self.registry.names())
        if unknown:
            raise ConfigurationError("job_limits names unknown job type(s): "
                                     + ", ".join(sorted(unknown)))
        return limits_for(self.registry, overrides)

    @cached_property
    def state_client(self) -> Any | None:
        """The shared-state Redis (rates, budgets, key invalidation); None when the settings
        name none (then tenant rates and budgets are not enforced, and say so)."""
        from .adapters.redis_client import redis_client

        try:
            url = self.settings.state_redis()
        except ConfigurationError:
            return None
        return redis_client(url, socket_timeout=3, socket_connect_timeout=2)

    @cached_property
    def tenant_gate(self) -> TenantGate:
        from .adapters.budget import RedisBudget, RedisSubmitRate

        client = self.state_client
        if client is None:
            log.warning("no shared Redis: tenant submission rates and budgets are not "
                        "enforced")
            return TenantGate(self.store)
        return TenantGate(self.store, rate=RedisSubmitRate(client),
                          budget=RedisBudget(client, self.store))

    @cached_property
    def spending(self) -> Spending:
        return Spending(self.store, budget=self.tenant_gate.budget,
                        settings_of=self.tenant_gate.settings)

    def close(self) -> None:
        for name in ("outbox", "event_wakeups"):  # what requests handed them goes out first
            batches = self.__dict__.get(name)
            if batches is not None:
                batches.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if self.__dict__.get("state_client") is not None:
            self.state_client.close()
        if self.__dict__.get("event_publisher") is not None:
            self.event_publisher.close()


def build_container(settings: Settings, *, db_pool_size: int = 5) -> Container:
    from .jobs import load_builtin_jobs

    return Container(settings=settings, registry=load_builtin_jobs(settings.job_modules),
                     db_pool_size=db_pool_size)
