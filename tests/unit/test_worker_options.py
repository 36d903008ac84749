"""The Celery command line `tidegate worker` builds from its flags and settings."""

from __future__ import annotations

import pytest

from tidegate.config import Settings
from tidegate.core.errors import ConfigurationError
from tidegate.worker.options import choose_pool, parse_autoscale, worker_argv


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_autoscale_is_max_then_min() -> None:
    assert parse_autoscale("10,3") == (10, 3)
    assert parse_autoscale("8") == (8, 0)
    for bad in ("3,10", "0", "a,b", "1,2,3", ""):
        with pytest.raises(ConfigurationError):
            parse_autoscale(bad)


def test_prefork_only_flags_pick_prefork_unless_a_pool_was_chosen() -> None:
    chosen = choose_pool(settings(worker_max_tasks_per_child=50))
    assert chosen.worker_pool == "prefork"
    assert choose_pool(settings()).worker_pool == "threads"
    with pytest.raises(ConfigurationError, match="--autoscale.*threads pool"):
        choose_pool(settings(worker_pool="threads", worker_autoscale="4,1"))


def test_argv() -> None:
    argv = worker_argv(choose_pool(settings(worker_autoscale="6,2", worker_prefetch_multiplier=4,
                                            worker_max_memory_per_child_kb=200_000)),
                       queues=["high"], node="n@h", loglevel="INFO")
    assert argv[argv.index("--autoscale") + 1] == "6,2" and "-c" not in argv
    assert argv[argv.index("--prefetch-multiplier") + 1] == "4"
    assert argv[argv.index("--max-memory-per-child") + 1] == "200000"
    assert argv[argv.index("-P") + 1] == "prefork"
    plain = worker_argv(settings(worker_concurrency=10), queues=["high", "low"], node="n@h",
                        loglevel="INFO")
    assert plain[plain.index("-c") + 1] == "10" and plain[plain.index("-Q") + 1] == "high,low"
