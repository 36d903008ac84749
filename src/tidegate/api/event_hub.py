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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..adapters.dead_peer import tcp_keepalive_options
from ..adapters.metrics import event_streams_open
from ..adapters.sql.events import Event, EventLog

log = logging.getLogger(__name__)

QUEUE_MAX = 1000


@dataclass(eq=False)
class Subscription:
    match: Callable[[Event], bool]
    head: int  # every matching event after this id comes through the queue
    index: str  # "job:<id>", "tenant:<name>" or "all": the hub looks at these subscriptions only
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventHub:
    def __init__(self, log_: EventLog, *, redis_url: str | None, channel: str,
                 poll_s: float = 1.0, gap_grace_s: float = 2.0, batch: int = 1000) -> None:
        self.log = log_
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
                  tenant: str | None = None) -> Subscription:
        """Events of ``job_id`` (or of ``tenant``; neither: of every job) for which ``match``
        holds."""
        index = (f"job:{job_id}" if job_id is not None
                 else f"tenant:{tenant}" if tenant is not None else "all")
        sub = Subscription(match, self.head, index)
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

    @property
    def open_streams(self) -> int:
        return self._count

    def poke(self) -> None:
        self._wake.set()

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
                # Nobody listens: keep the position current without reading events.
                with contextlib.suppress(Exception):
                    self.head = max(self.head, await asyncio.to_thread(self.log.last_id))
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
