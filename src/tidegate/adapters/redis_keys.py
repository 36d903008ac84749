"""Every Redis key Tidegate writes outside Celery's own, in one place.

A key built from user input (a tenant, a conversation id) is built by :func:`join_key`, which
percent-encodes each component: no component can contain the separator, so two different
tuples of components never give the same key (``co:lab`` + ``c1`` is not ``co`` + ``lab:c1``).
"""

from __future__ import annotations

from urllib.parse import quote

BEAT_LEADER = "tg:beat:leader"  # string: the token of the scheduler that currently leads
CONVERSATION = "tg:conv"  # hash per (tenant, conversation): job id -> one chat turn

# Characters kept as they are: ':' (the separator), '%' (the escape) and the braces of a
# Redis Cluster hash tag are always encoded.
_SAFE = "-_.~"


def join_key(prefix: str, *parts: str) -> str:
    """``prefix:part1:part2...`` with each part encoded so the join is injective.

    Plain names (letters, digits, ``-_.~``) stay readable, so existing keys of such names
    are unchanged.
    """
    return ":".join([prefix, *(quote(p, safe=_SAFE) for p in parts)])


def conversation_key(tenant: str, conversation_id: str) -> str:
    return join_key(CONVERSATION, tenant, conversation_id)
FRONTIER = "tg:frontier"  # hash: <queue>:sent -> latest claimed send time, <queue>:moved
WORKERS_ALIVE = "tg:workers:alive"  # zset: lease owner (hostname/pid) -> last stamp, server ms
SUBMIT_RATE = "tg:rpm"  # zset per tenant: submission id -> ms (sliding minute)
BUDGET = "tg:budget"  # hash per (tenant, period) of used totals, and one of reservations
STREAMS = "tg:streams"  # zset per tenant: open stream id -> expiry ms
# pub/sub channel: a job id each time events of that job were committed (a wake-up only;
# readers take the events themselves from the table).
EVENTS_CHANNEL = "tg:events"
