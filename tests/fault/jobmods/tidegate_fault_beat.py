"""A fault for the schedule failover test (loaded through TIDEGATE_JOB_MODULES by `tidegate
beat`): the Nth slot a scheduler writes stalls inside its transaction, after the run row and
the job row are written and before the commit, so that the test can kill the leader mid-slot.

TIDEGATE_FAULT_STALL_FIRE=N picks the slot; TIDEGATE_FAULT_STALL_MARK names a file created
(O_EXCL) by the one process that stalls, so the scheduler that takes over does not stall too.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tidegate.adapters.sql.store import SqlJobStore

_original = SqlJobStore.insert_job
_count = 0


def _stalling_insert(self: SqlJobStore, conn: Any, job: Any) -> Any:
    global _count
    row = _original(self, conn, job)
    if job.schedule is None:
        return row
    _count += 1
    if _count == int(os.environ.get("TIDEGATE_FAULT_STALL_FIRE", "0")):
        try:
            fd = os.open(os.environ["TIDEGATE_FAULT_STALL_MARK"],
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return row
        os.write(fd, job.idempotency_key.encode())
        os.close(fd)
        print(f"FAULT stalled mid-slot {job.idempotency_key}", flush=True)
        sys.stdout.flush()
        time.sleep(120)
    return row


SqlJobStore.insert_job = _stalling_insert  # type: ignore[method-assign]
