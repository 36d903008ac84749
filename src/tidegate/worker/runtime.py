"""One Runtime per worker process, built lazily after fork (engines must not cross a fork)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded

from ..config import Settings, load_settings
from ..core.runner import Runner, RunnerConfig
from ..wiring import Container, build_container

if TYPE_CHECKING:
    from ..llm import GatewayPolicy

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    container: Container
    runner: Runner
    pid: int


_lock = threading.Lock()
_runtime: Runtime | None = None
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """Set the settings the worker process will build its runtime from."""
    global _settings, _runtime
    with _lock:
        if _runtime is not None:
            _runtime.container.close()
        _settings, _runtime = settings, None


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            settings = _settings or load_settings()
            container = build_container(settings)
            worker_id = f"{socket.gethostname()}/{os.getpid()}"
            runner = Runner(container.store, container.registry, worker_id=worker_id,
                            config=runner_config(settings),
                            services=build_services(container),
                            time_limit_errors=(SoftTimeLimitExceeded,))
            _runtime = Runtime(container, runner, os.getpid())
        return _runtime


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(lease_s=settings.lease_s, heartbeat_s=settings.heartbeat_s,
                        backoff_base_s=settings.retry_backoff_base_s,
                        backoff_cap_s=settings.retry_backoff_cap_s,
                        max_quota_wait_s=settings.max_quota_wait_s)


def gateway_policy(settings: Settings) -> GatewayPolicy:
    """The gateway retries a job after a transient provider error with the runner's backoff."""
    from ..llm import GatewayPolicy

    return GatewayPolicy(backoff_base_s=settings.retry_backoff_base_s,
                         backoff_cap_s=settings.retry_backoff_cap_s)


def current() -> Runtime | None:
    """This process's runtime if it was built (None before the first job)."""
    rt = _runtime
    return rt if rt is not None and rt.pid == os.getpid() else None


def build_services(container: Container) -> dict[str, object]:
    """What handlers reach through ``ctx.services``: the LLM gateway and shared Redis."""
    import redis

    from ..adapters.limiter import RedisLimiter
    from ..core.limits import SERVICE_POLICY
    from ..llm import LLMGateway
    from ..providers import build_providers

    settings = container.settings
    state = redis.Redis.from_url(settings.state_redis(), socket_timeout=10,
                                 socket_connect_timeout=3, health_check_interval=30)
    config = container.llm_config
    providers = build_providers(os.environ, simulator_url=settings.simulator_url)
    gateway = LLMGateway(providers, RedisLimiter(state, policy=SERVICE_POLICY), config,
                         policy=gateway_policy(settings))
    return {"settings": settings, "redis": state, "llm": gateway}
