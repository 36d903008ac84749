"""Every Redis key Tidegate writes outside Celery's own, in one place."""

BEAT_LEADER = "tg:beat:leader"  # string: the token of the scheduler that currently leads
LIMITER_PREFIX = "tg:lim:"  # rate limiter lanes (see adapters/limiter)
WORKERS_ALIVE = "tg:workers:alive"  # zset: lease owner (hostname/pid) -> last stamp, server ms
