"""Which Celery pool fits I/O-bound jobs? Threads against prefork, same concurrency, one run.

Runs the same batch of I/O-bound `echo` jobs (each sleeps, as an LLM call waits on HTTP)
through one worker with ``--pool threads`` and one with ``--pool prefork``, and prints for
each the makespan and the resident memory of the worker's whole process tree, with the
threads/prefork ratios.

    .venv/bin/python -m benchmarks.pool_bench [--jobs 64] [--concurrency 8] [--sleep 1.0]

Needs Redis on 127.0.0.1:6379 (uses database 10 and flushes it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.config import Settings
from tidegate.wiring import build_container

REDIS_URL = os.environ.get("TIDEGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")


def tree_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def run(pool: str, jobs: int, concurrency: int, sleep_s: float) -> tuple[float, int]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        upgrade(make_engine(db))
        env = {**os.environ, "TIDEGATE_DATABASE_URL": db, "TIDEGATE_REDIS_URL": REDIS_URL,
               "TIDEGATE_DATA_DIR": tmp, "TIDEGATE_SIMULATOR": "off"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "tidegate", "worker", "-c", str(concurrency), "--pool", pool,
             "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            settings = Settings(_env_file=None, database_url=db, redis_url=REDIS_URL,  # type: ignore[call-arg]
                                data_dir=Path(tmp))
            container = build_container(settings)
            time.sleep(3)  # let the worker start before the clock does
            started = time.monotonic()
            ids = [container.service.submit(tenant="bench", type="echo",
                                            input={"sleep_s": sleep_s, "steps": 1})[0].id
                   for _ in range(jobs)]
            peak = 0
            while True:
                peak = max(peak, tree_rss_kb(worker.pid))
                done = sum(container.store.get(i).status.terminal for i in ids)
                if done == jobs:
                    break
                time.sleep(0.1)
            return time.monotonic() - started, peak
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=1.0)
    args = ap.parse_args()
    results = {pool: run(pool, args.jobs, args.concurrency, args.sleep)
               for pool in ("prefork", "threads")}
    minimum = args.jobs / args.concurrency * args.sleep
    print(f"{args.jobs} jobs x {args.sleep}s of waiting, concurrency {args.concurrency} "
          f"(theoretical minimum {minimum:.1f}s)")
    for pool, (makespan, rss) in results.items():
        print(f"  {pool:<8} makespan {makespan:6.2f}s ({makespan / minimum:.2f}x min)  "
              f"peak RSS {rss / 1024:7.1f} MiB")
    (mt, rt), (mp, rp) = results["threads"], results["prefork"]
    print(f"threads/prefork: makespan {mt / mp:.2f}x, memory {rt / rp:.2f}x")


if __name__ == "__main__":
    main()
