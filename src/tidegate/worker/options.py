"""The command line a Tidegate worker hands to Celery, from its settings: the flags Celery users
already pass (--autoscale, --max-tasks-per-child, --max-memory-per-child,
--prefetch-multiplier) checked up front, so a mistake is one clear message at start."""

from __future__ import annotations

from ..config import Settings
from ..core.errors import ConfigurationError

# These act on the prefork pool's child processes; the threads and solo pools have none.
PREFORK_ONLY = {
    "worker_autoscale": "--autoscale",
    "worker_max_tasks_per_child": "--max-tasks-per-child",
    "worker_max_memory_per_child_kb": "--max-memory-per-child",
}


def parse_autoscale(value: str) -> tuple[int, int]:
    """``"MAX,MIN"`` (Celery's order; ``"MAX"`` alone means MIN 0) as ``(max, min)``."""
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or len(parts) != len(numbers):
        raise ConfigurationError(f"--autoscale wants MAX,MIN (two whole numbers), not {value!r}")
    high, low = numbers[0], numbers[1] if len(numbers) == 2 else 0
    if high < 1 or low < 0 or low > high:
        raise ConfigurationError(f"--autoscale {value}: need MAX >= 1 and 0 <= MIN <= MAX")
    return high, low


def choose_pool(settings: Settings) -> Settings:
    """The settings with the pool these flags need: a prefork-only flag picks prefork when no
    pool was chosen, and is refused beside an explicit threads or solo pool."""
    wanted = [flag for field, flag in PREFORK_ONLY.items() if getattr(settings, field)]
    if not wanted or settings.worker_pool == "prefork":
        return settings
    if "worker_pool" in settings.model_fields_set:
        raise ConfigurationError(
            f"{', '.join(wanted)} act(s) on the prefork pool's child processes; the "
            f"{settings.worker_pool} pool has none: use --pool prefork or drop the flag")
    return settings.model_copy(update={"worker_pool": "prefork"})


def worker_argv(settings: Settings, *, queues: list[str], node: str, loglevel: str) -> list[str]:
    """Celery's ``worker`` arguments for this worker. Raises ConfigurationError."""
    argv = ["worker", "-Q", ",".join(queues), "-P", settings.worker_pool, "-n", node,
            "--loglevel", loglevel, "-E", "--without-gossip", "--without-mingle",
            "--prefetch-multiplier", str(settings.worker_prefetch_multiplier)]
    if settings.worker_autoscale:
        high, low = parse_autoscale(settings.worker_autoscale)
        argv += ["--autoscale", f"{high},{low}"]
    else:
        argv += ["-c", str(settings.worker_concurrency)]
    if settings.worker_max_tasks_per_child:
        argv += ["--max-tasks-per-child", str(settings.worker_max_tasks_per_child)]
    if settings.worker_max_memory_per_child_kb:
        argv += ["--max-memory-per-child", str(settings.worker_max_memory_per_child_kb)]
    return argv
