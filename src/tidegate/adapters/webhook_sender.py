"""WebhookSender: sends the due deliveries of the outbox, retrying with exponential backoff.

Run by the scheduler (`tidegate beat`, and so by `tidegate up`), beside the sweep. At least
once: a row is claimed before it is sent and recorded after, so a crash in between sends it
again after the claim's lease; receivers deduplicate on the `Tidegate-Delivery` header.
"""

from __future__ import annotations

import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from .. import webhooks
from ..core.models import utcnow
from .sql.webhooks import Due, WebhookStore, delivery_id
from .webhook_http import Refused, post

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SenderConfig:
    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    give_up_s: float = 86400.0
    timeout_s: float = 5.0
    allow_http: bool = False
    allow_private: bool = False
    batch: int = 50
    parallel: int = 8


class WebhookSender:
    def __init__(self, store: WebhookStore, config: SenderConfig) -> None:
        self.store = store
        self.config = config
        self._client = httpx.Client(timeout=httpx.Timeout(config.timeout_s,
                                                          connect=min(3.0, config.timeout_s)),
                                    follow_redirects=False, trust_env=False)
        self._pool = ThreadPoolExecutor(config.parallel, thread_name_prefix="webhook")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def run_once(self) -> int:
        """Send what is due now; returns how many were attempted."""
        # The lease covers every send of the batch, done `parallel` at a time.
        lease_s = self.config.timeout_s * 4 * (1 + self.config.batch // self.config.parallel)
        due = self.store.claim_due(limit=self.config.batch, lease_s=lease_s)
        list(self._pool.map(self._send, due))
        return len(due)

    def backoff_s(self, attempts: int) -> float:
        delay = min(self.config.retry_cap_s, self.config.retry_base_s * 2 ** (attempts - 1))
        return delay * random.uniform(0.8, 1.0)  # spread a burst of failures out

    def _send(self, due: Due) -> None:
        body = json.dumps(due.event, separators=(",", ":")).encode()
        headers = {**webhooks.sign(due.secrets, body),
                   webhooks.DELIVERY_HEADER: delivery_id(due.id),
                   webhooks.EVENT_HEADER: due.event["kind"]}
        status: int | None = None
        error: str | None = None
        try:
            if not due.secrets:
                raise Refused("the endpoint's secret cannot be read (TIDEGATE_SECRET_KEY "
                              "changed?); rotate it")
            answer = post(self._client, due.url, body, headers,
                          allow_http=self.config.allow_http,
                          allow_private=self.config.allow_private)
            status = answer.status
            if 200 <= status < 300:
                self.store.record(due.id, delivered=True, response_status=status, error=None,
                                  retry_at=None)
                return
            error = (f"HTTP {status} (redirects are not followed)" if 300 <= status < 400
                     else f"HTTP {status}")
        except Refused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # a bug must not stop the other deliveries
            log.exception("webhook delivery %s failed unexpectedly", due.id)
            error = f"{type(exc).__name__}"
        # Retried for at least give_up_s: the last retry is due at the deadline itself (not
        # at the last backoff step before it), and only an attempt at or past it gives up.
        now = utcnow()
        deadline = due.created_at + timedelta(seconds=self.config.give_up_s)
        retry_at: datetime | None = min(now + timedelta(seconds=self.backoff_s(due.attempts)),
                                        deadline)
        if now >= deadline:
            retry_at = None  # retried long enough: failed for good
            log.warning("webhook delivery %s to %s failed for good after %d attempts: %s",
                        due.id, due.url, due.attempts, error)
        self.store.record(due.id, delivered=False, response_status=status, error=error,
                          retry_at=retry_at)
