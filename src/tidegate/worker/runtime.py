"""One Runtime per worker process, built lazily after fork (engines must not cross a fork)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded

from ..adapters.liveness import LivenessBeacon
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
_beacon: tuple[int, LivenessBeacon] | None = None
# Database connections beyond one per job slot: each running job's heartbeat, the time-limit
# watchdog and the retry re-send share the pool with the jobs themselves.
DB_POOL_HEADROOM = 2


def configure(settings: Settings) -> None:
    """Set the settings the worker process will build its runtime from."""
    global _settings, _runtime, _beacon
    with _lock:
        if _runtime is not None:
            _runtime.container.close()
        if _beacon is not None:
            _beacon[1].stop()
        _settings, _runtime, _beacon = settings, None, None


def worker_id() -> str:
    """This process's lease owner id (also its name in the liveness registry)."""
    return f"{socket.gethostname()}/{os.getpid()}"


def db_pool_size(settings: Settings) -> int:
    """Connections one worker process keeps: a prefork child runs one job at a time."""
    slots = 1 if settings.worker_pool == "prefork" else settings.worker_concurrency
    return slots + DB_POOL_HEADROOM


def start_liveness() -> None:
    """Stamp this process as alive in the shared Redis, from now until it exits (idempotent;
    after a fork the child starts its own)."""
    with _lock:
        _start_liveness()


def _start_liveness() -> None:
    global _beacon
    if _beacon is None or _beacon[0] != os.getpid():
        settings = _settings or load_settings()
        _beacon = (os.getpid(), LivenessBeacon(settings.state_redis(), worker_id()).start())


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            settings = _settings or load_settings()
            _start_liveness()  # before this process can claim its first job
            container = build_container(settings, db_pool_size=db_pool_size(settings))
            runner = Runner(container.store, container.registry, worker_id=worker_id(),
                            config=runner_config(settings),
                            services=build_services(container),
                            time_limit_errors=(SoftTimeLimitExceeded,),
                            tenant_settings=container.tenant_gate.settings,
                            type_gate=container.type_gate,
                            type_limit=container.type_limits())
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
    from ..adapters.limiter import RedisCalibrator, RedisLimiter
    from ..adapters.redis_client import redis_client
    from ..core.limits import SERVICE_POLICY
    from ..llm import LLMGateway
    from ..llm.reuse import RedisAnswers
    from ..providers import build_providers

    settings = container.settings
    state = redis_client(settings.state_redis(), socket_timeout=10, socket_connect_timeout=3)
    config = container.llm_config
    providers = build_providers(os.environ, simulator_url=settings.simulator_url)
    gateway = LLMGateway(providers, RedisLimiter(state, policy=SERVICE_POLICY), config,
                         policy=gateway_policy(settings), spending=container.spending,
                         calibration=RedisCalibrator(state), answers=RedisAnswers(state),
                         weights=container.tenant_gate.weight)
    return {"settings": settings, "redis": state, "llm": gateway}


def check_configuration(settings: Settings) -> None:
    """Build once, at start-up, everything a job will need (job modules, the LLM config, the
    providers, the shared Redis URL), so that a mistake stops the worker at once with its
    file and key named, instead of failing every delivery after the worker said "ready".
    Connects to nothing. Raises ConfigurationError."""
    from ..core.errors import ConfigurationError
    from ..llm_config import LLMConfigError

    try:
        settings.broker()
        settings.state_redis()
        services = build_services(build_container(settings))
    except ConfigurationError:
        raise
    except LLMConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    except Exception as exc:
        raise ConfigurationError(f"{type(exc).__name__}: {exc}") from exc
    services["redis"].close()  # type: ignore[attr-defined]
