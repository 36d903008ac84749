"""EventHub: one reader of the event table per API process, fanned out to every open stream.

A worker commits a transition and its event, then PUBLISHes a wake-up on Redis. The hub's one
subscriber wakes, reads the events after the last id it saw (one query for all streams), and
puts each event on the queue of every stream it matches. A wake-up that never arrives costs
only latency: the hub also reads on a timer (``TIDEGATE_EVENTS_POLL_S``).

Ids come from one sequence, but on PostgreSQL two transactions can commit out of id order. The
hub hands events on strictly in id order: past a missing id it waits (up to ``gap_grace_s``)
for the transaction holding it to commit; an id still missing then was rolled back. One job's
events never race like that: each is written under the job row's lock.

A stream that connects with ``Last-Event-ID`` subscribes first (noting the hub's position),
then reads its backlog from the table up to that position: nothing is lost between the two and
nothing is sent twice. A stream too slow for its queue is cut over to the table again.

The hub also re-checks the API keys of its open streams, every ``recheck_s``: one look-up per
key for all the streams on it, and a revoked key wakes its streams to end them. (Each stream
asking on its own timer cost a thread hop per stream per second: with 1,000 open streams, half
of the process's time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..adapters.dead_peer import tcp_keepalive_options
from ..adapters.metrics import event_streams_open
from ..adapters.sql.events import Event, EventLog
from ..core.errors import Unavailable

log = logging.getLogger(__name__)

QUEUE_MAX = 1000
WIRE_CACHE_MAX = 4096  # encoded events kept: one event goes to every stream of its job


@dataclass(eq=False)
class Subscription:
    match: Callable[[Event], bool]
    head: int  # every matching event after this id comes through the queue
    index: str  # "job:<id>", "tenant:<name>" or "all": the hub looks at these subscriptions only
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    key_id: str | None = None  # the API key it was opened with, re-checked by the hub
    revoked: bool = False  # that key was revoked or expired since: end the stream


class EventHub:
    def __init__(self, log_: EventLog, *, redis_url: str | None, channel: str,
                 poll_s: float = 1.0, gap_grace_s: float = 2.0, batch: int = 1000,
                 key_valid: Callable[[str], bool] | None = None,
                 recheck_s: float = 1.0) -> None:
        self.log = log_
        self.key_valid = key_valid
        self.recheck_s = recheck_s
        self.redis_url = redis_url
        self.channel = channel
        self.poll_s = poll_s
        self.gap_grace_s = gap_grace_s
        self.batch = batch
        self.head = 0
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._gap_since: dict[int, float] = {}
        self._wire: OrderedDict[int, bytes] = OrderedDict()  # see wire()
        self.started = False

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start reading at the newest event (lazily, on the first stream)."""
        if self.started:
            return
        head = await asyncio.to_thread(self.log.last_id)  # Unavailable: 503, try again later
        if self.started:  # another stream started it meanwhile
            return
        self.started = True
        self.head = head
        self._tasks.append(asyncio.create_task(self._read_loop(), name="event-hub-reader"))
        if self.redis_url:
            self._tasks.append(asyncio.create_task(self._listen(), name="event-hub-wakeups"))
        if self.key_valid is not None:
            self._tasks.append(asyncio.create_task(self._watch_keys(), name="event-hub-keys"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._wake = asyncio.Event()  # the next start may run on another event loop
        self.started = False

    # -- subscriptions ----------------------------------------------------------------------
    def subscribe(self, match: Callable[[Event], bool], *, job_id: str | None = None,
                  tenant: str | None = None, key_id: str | None = None) -> Subscription:
        """Events of ``job_id`` (or of ``tenant``; neither: of every job) for which ``match``
        holds; with ``key_id``, until that API key is revoked (``Subscription.revoked``)."""
        index = (f"job:{job_id}" if job_id is not None
                 else f"tenant:{tenant}" if tenant is not None else "all")
        sub = Subscription(match, self.head, index, key_id=key_id)
        self._subs.setdefault(index, set()).add(sub)
        self._count += 1
        event_streams_open.inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.index)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self._count -= 1
        event_streams_open.dec()
        if not subs:
            del self._subs[sub.index]

    def resubscribe(self, sub: Subscription) -> None:
        """After an overflow: the stream reads the table up to ``sub.head`` again."""
        sub.queue = asyncio.Queue(QUEUE_MAX)
        sub.overflowed = False
        sub.head = self.head

    def wire(self, event: Event, encode: Callable[[Event], bytes]) -> bytes:
        """``encode(event)``, once per event for all the streams it goes to (ids are unique
        in this hub's database, which is why the cache is the hub's)."""
        wire = self._wire.get(event["id"])
        if wire is None:
            wire = self._wire[event["id"]] = encode(event)
            if len(self._wire) > WIRE_CACHE_MAX:
                self._wire.popitem(last=False)
        return wire

    @property
    def open_streams(self) -> int:
        return self._count

    def poke(self) -> None:
        self._wake.set()

    # -- keys ------------------------------------------------------------------------------
    async def _watch_keys(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_s)
            by_key: dict[str, list[Subscription]] = {}
            for subs in self._subs.values():
                for sub in subs:
                    if sub.key_id is not None and not sub.revoked:
                        by_key.setdefault(sub.key_id, []).append(sub)
            if not by_key:
                continue
            try:
                invalid = await asyncio.to_thread(self._invalid_keys, list(by_key))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving; look again next time
                log.warning("stream key re-check failed: %s", exc)
                continue
            for key_id in invalid:
                for sub in by_key[key_id]:
                    sub.revoked = True
                    sub.wake.set()

    def _invalid_keys(self, key_ids: list[str]) -> list[str]:
        assert self.key_valid is not None
        invalid = []
        for key_id in key_ids:
            try:
                if not self.key_valid(key_id):
                    invalid.append(key_id)
            except Unavailable:
                pass  # the database blinked: keep serving, check again next time
        return invalid

    # -- reading ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            # Keepalives, so that a wake-up channel to a vanished Redis is given up and made
            # again (the subscription waits on reads with no timeout of its own).
            client = aioredis.Redis.from_url(self.redis_url or "", socket_connect_timeout=2,
                                             socket_keepalive=True,
                                             socket_keepalive_options=tcp_keepalive_options())
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._wake.set()  # events may have come while we were not listening
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the poll timer delivers meanwhile
                log.warning("event wake-ups unavailable (%s); polling every %.1fs",
                            type(exc).__name__, self.poll_s)
                await asyncio.sleep(2.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _read_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            self._wake.clear()
            if not self._subs:
                # Nobody listens: keep the position current without reading events. Only if
                # still nobody listens once the read is back: a stream that subscribed during
                # it reads its backlog up to the old position, and the events after it must
                # come through its queue, not be skipped.
                with contextlib.suppress(Exception):
                    newest = await asyncio.to_thread(self.log.last_id)
                    if not self._subs:
                        self.head = max(self.head, newest)
                continue
            try:
                more = await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event stream read failed: %s", exc)
                await asyncio.sleep(min(self.poll_s, 1.0))
                continue
            if more:
                self._wake.set()

    async def _read_once(self) -> bool:
        """Hand on the events after ``head``; True if there may be more right away."""
        events = await asyncio.to_thread(self.log.tail, self.head, limit=self.batch)
        waiting_for_gap = False
        for event in events:
            if event["id"] != self.head + 1 and not self._gap_is_old(self.head + 1):
                waiting_for_gap = True
                break
            self._dispatch(event)
            self.head = event["id"]
        if waiting_for_gap:
            await asyncio.sleep(0.05)  # the missing transaction is committing; look again
            return True
        self._gap_since.clear()
        return len(events) == self.batch

    def _gap_is_old(self, missing: int) -> bool:
        first = self._gap_since.setdefault(missing, time.monotonic())
        return time.monotonic() - first >= self.gap_grace_s

    def _dispatch(self, event: Event) -> None:
        for sub in [*self._subs.get(f"job:{event['job_id']}", ()),
                    *self._subs.get(f"tenant:{event['tenant']}", ()),
                    *self._subs.get("all", ())]:
            if sub.overflowed or event["id"] <= sub.head or not sub.match(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
            sub.wake.set()
