"""How long a SIGKILLed worker's running jobs wait before another worker runs them again.

With the production timings (lease 30 s, heartbeat 2 s, sweep every 10 s): one worker runs two
long jobs, a spare worker is up and idle, the first worker's process group gets SIGKILL, and
the clock runs until both jobs are `running` again under another owner. Repeated ``--runs``
times (the rescued jobs are cancelled and two fresh ones submitted each time); prints every
run and the median.

    .venv/bin/python -m benchmarks.recovery_bench --runs 5

Private redis-server (broker and shared state) and a fresh PostgreSQL database on the shared
server (created and dropped). Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from tests.fault.harness import Proc, ProcSet, RedisServer, Stack, wait_for
from tests.services import PG_URL

PRODUCTION_TIMINGS = {
    "TIDEGATE_LEASE_S": "30", "TIDEGATE_HEARTBEAT_S": "2", "TIDEGATE_SWEEP_INTERVAL_S": "10",
    "TIDEGATE_DISPATCH_GRACE_S": "10", "TIDEGATE_JOB_TIME_LIMIT_S": "1500",
    "TIDEGATE_REDISPATCH_AFTER_S": "600",
}


def one_run(stack: Stack, client: httpx.Client, victim: Proc, pool: str) -> tuple[float, Proc]:
    """Two jobs on ``victim``; a spare worker up; SIGKILL; seconds until both run again."""
    ids = [client.post("/v1/jobs", json={"type": "fault_work", "input": {
        "sleep_s": 300, "steps": 300}}).json()["job_id"] for _ in range(2)]

    def rows() -> list[dict[str, Any]]:
        return list(stack.rows(ids).values())

    wait_for(lambda: all(r["status"] == "running" and r["attempts"] == 1 for r in rows()), 60,
             "jobs running")
    owners = {r["lease_owner"] for r in rows()}
    spare = stack.start_worker(concurrency=2, pool=pool)
    time.sleep(1)
    victim.signal_group(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: all(r["status"] == "running" and r["lease_owner"] not in owners
                         for r in rows()), 120, "jobs running again on the spare", every_s=0.05)
    took = time.monotonic() - killed_at
    for job_id in ids:
        client.delete(f"/v1/jobs/{job_id}")
    wait_for(lambda: all(r["status"] == "cancelled" for r in rows()), 30, "cancelled")
    return took, spare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pool", default="threads")
    args = parser.parse_args()
    from tidegate.adapters.sql import make_engine
    from tidegate.adapters.sql.migrate import upgrade

    root = Path(tempfile.mkdtemp(prefix="tg-recovery-"))
    (root / "logs").mkdir()
    procs = ProcSet(root / "logs")
    name = f"tgbench_recovery_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    times: list[float] = []
    try:
        redis = RedisServer(procs, root).start()
        stack = Stack(procs, root, broker="redis", broker_url=redis.url, redis_url=redis.url,
                      database_url=db_url, env=PRODUCTION_TIMINGS)
        stack.start_all(concurrency=2, pool=args.pool)
        victim = stack.workers[0]
        with stack.client() as client:
            for run in range(args.runs):
                took, victim = one_run(stack, client, victim, args.pool)
                times.append(took)
                print(f"run {run + 1}: {took:.2f}s", flush=True)
        stack.close()
    finally:
        procs.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"recovery after SIGKILL ({args.pool} pool), {len(times)} runs: "
          f"median {statistics.median(times):.2f}s, min {min(times):.2f}s, "
          f"max {max(times):.2f}s")


if __name__ == "__main__":
    main()
