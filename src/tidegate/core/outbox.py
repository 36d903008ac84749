"""The API's broker sends, after the 202 and in batches: a new job's id goes to its queue, then
the send is recorded on its row (`dispatched_at`).

Neither need happen before the answer: a 202 promises the committed row, and a row whose
message never went out (broker down, the process killed first) is still undispatched, so the
sweep sends it after its grace (10 s). Both are cheaper in batches: one broker pipeline for
the messages gathered in the last few milliseconds, one UPDATE for their marks. A mark only
spares the sweep a re-send, and a second message for a row is harmless (the claim is a
conditional UPDATE), so a batch that half failed costs at most duplicates.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .batches import Batches
from .errors import Unavailable
from .models import Job
from .ports import Dispatcher, JobStore

log = logging.getLogger(__name__)

# (job id, queue, attempt, version, label): what is sent, the row state the mark requires,
# and what monitoring shows of the task.
Send = tuple[str, str, int, datetime, dict[str, str]]


def label_of(job: Job) -> dict[str, str]:
    """What Flower and `celery events` show of a job's task: its type and tenant (the message
    itself carries only the id)."""
    return {"job_type": job.type, "tenant": job.tenant}


class SendOutbox:
    def __init__(self, dispatcher: Dispatcher, store: JobStore, *, linger_s: float = 0.002,
                 max_batch: int = 200) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self._batches: Batches[Send] = Batches(self._send, name="job-sends",
                                               linger_s=linger_s, max_batch=max_batch)

    def add(self, job: Job) -> None:
        """Send ``job`` (a waiting row, as read) soon, then mark it sent if it is unchanged:
        a worker that already claimed it (and maybe parked it again) keeps its own state."""
        self._batches.add((job.id, job.priority.value, job.attempts, job.updated_at,
                           label_of(job)))

    def flush(self) -> int:
        """Send and mark everything pending now; returns how many rows were marked."""
        return self._batches.flush()

    def close(self) -> None:
        self._batches.close()

    def _send(self, batch: list[Send]) -> int:
        try:
            self.dispatcher.send_many([(job_id, queue, label)
                                       for job_id, queue, _, _, label in batch])
        except Unavailable as exc:
            log.warning("broker unavailable, %d job(s) stay queued for the sweep: %s",
                        len(batch), exc)
            return 0
        try:
            return self.store.mark_dispatched_many(
                [(job_id, attempt, version) for job_id, _, attempt, version, _ in batch])
        except Exception:
            log.warning("%d job(s) sent, but recording it failed; the sweep re-sends them",
                        len(batch), exc_info=True)
            return 0
