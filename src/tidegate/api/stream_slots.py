"""A tenant's cap on open event streams (``max_streams``), for every streaming route.

``slot = take_stream_slot(container, tenant)`` before streaming (429 `rate_limited` when the
tenant has its maximum open), ``slot.renew()`` now and then while open, ``slot.give()`` when the
stream ends. Without the setting (or without a shared Redis) it costs nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import TooManyRequests

log = logging.getLogger(__name__)

RENEW_EVERY_S = 10.0


@dataclass
class StreamSlot:
    slots: Any | None
    tenant: str
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed_at: float = field(default_factory=time.monotonic)

    def renew_due(self) -> bool:
        """Whether :meth:`renew` would talk to Redis now (call it off the event loop then)."""
        return self.slots is not None and time.monotonic() - self.renewed_at >= RENEW_EVERY_S

    def renew(self) -> None:
        """Cheap to call on every loop: talks to Redis every RENEW_EVERY_S only."""
        if not self.renew_due():
            return
        self.renewed_at = time.monotonic()
        try:
            self.slots.renew(self.tenant, self.stream_id)
        except Exception:
            log.warning("could not renew a stream slot of %s", self.tenant, exc_info=True)

    def give(self) -> None:
        if self.slots is None:
            return
        try:
            self.slots.give(self.tenant, self.stream_id)
        except Exception:  # it expires by itself
            log.warning("could not give back a stream slot of %s", self.tenant, exc_info=True)


def take_stream_slot(container: Any, tenant: str) -> StreamSlot:
    """A slot for one more open stream of ``tenant``, or TooManyRequests."""
    settings = container.tenant_gate.settings(tenant)
    if settings is None or settings.max_streams is None or container.state_client is None:
        return StreamSlot(None, tenant)
    from ..adapters.budget import RedisStreamSlots

    slots = RedisStreamSlots(container.state_client)
    slot = StreamSlot(slots, tenant)
    if not slots.take(tenant, slot.stream_id, settings.max_streams):
        raise TooManyRequests(f"tenant {tenant!r} has {settings.max_streams} event streams "
                              "open, its maximum; close one first", retry_after_s=5)
    return slot
