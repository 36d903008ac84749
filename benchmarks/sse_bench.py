"""What 1,000 open event streams cost the API, and how long an event takes to reach them.

Starts a private redis-server, a fresh SQLite job store and `tidegate api` (Gunicorn with one
Uvicorn worker, or ``--api-workers``), opens ``--streams`` per-job SSE streams (spread over
``--jobs`` running jobs), and plays the worker (``--writers`` threads): every job reports progress ``--rate`` times a second through
the real job store, and the time each write returned is noted. Measured:

* the API process's CPU (utime + stime from /proc) over ``--seconds``, with the streams open
  and events flowing, against the same with the streams open and no events, and per event;
* the delay from a report's commit to its arrival on a client stream, p50/p99
  over every (event, stream) pair. The clients run in ``--clients`` processes of their own,
  so that their parsing does not delay the worker's writes or the readings.

    .venv/bin/python -m benchmarks.sse_bench --streams 1000 --jobs 50 --rate 2 --seconds 20
    .venv/bin/python -m benchmarks.sse_bench --postgresql --rate 4   # more events a second
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from tests.fault.harness import ProcSet, RedisServer, wait_for
from tests.services import fresh_pg_database

from tidegate.adapters.event_bus import EventPublisher
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.keys import create_key
from tidegate.core.models import EventNote, Job, new_job_id
from tidegate.core.statuses import Priority
from tidegate.embedded import free_port

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (`tidegate api` is a Gunicorn
    master; its Uvicorn workers serve the streams). Every process is read, each time, so a
    worker that restarted is not missed (the count is then low, never high)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            fields = _stat(current)
            total += int(fields[11]) + int(fields[12])
        todo.extend(children.get(current, ()))
    return total / TICKS


_commits = threading.local()


class StampedPublisher(EventPublisher):
    """The store calls this right after each commit: note the time, then publish."""

    def __call__(self, job_ids: list[str]) -> None:
        _commits.at = time.time()
        super().__call__(job_ids)


def produce(store: SqlJobStore, jobs: list[str], rate: float, seconds: float,
            committed: dict[str, float], name: str) -> int:
    """Progress reports on every job, ``rate`` a second each, spread evenly; each report's
    commit time goes to ``committed`` under its message. Returns the count."""
    interval = 1.0 / (rate * len(jobs))
    sent = 0
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        job_id = jobs[sent % len(jobs)]
        message = f"{name}-{sent}"
        store.update_progress(job_id, attempt=1, progress=sent % 100, message=message,
                              note=EventNote("progress", {"percent": sent % 100,
                                                          "message": message}))
        committed[message] = _commits.at  # noted by the store's after-commit hook
        sent += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def follow(client: httpx.AsyncClient, job_id: str,
                 delays: list[tuple[str, float]], opened: list[int]) -> None:
    async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
        assert source.response.status_code == 200, source.response.status_code
        opened.append(1)
        async for sse in source.aiter_sse():
            if sse.event != "progress":
                continue
            delays.append((json.loads(sse.data)["detail"]["message"], time.time()))


async def _clients(url: str, key: str, jobs: list[str], opened_q: Any,
                   stop: Any) -> list[tuple[str, float]]:
    limits = httpx.Limits(max_connections=len(jobs) + 10,
                          max_keepalive_connections=len(jobs) + 10)
    delays: list[tuple[str, float]] = []
    opened: list[int] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=httpx.Timeout(120, connect=60), limits=limits) as client:
        tasks = [asyncio.create_task(follow(client, job_id, delays, opened)) for job_id in jobs]
        reported = 0
        while not stop.is_set():
            if len(opened) > reported:
                opened_q.put(len(opened) - reported)
                reported = len(opened)
            if stop.wait(0) or any(t.done() and t.exception() for t in tasks):
                break
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return delays


def client_process(url: str, key: str, jobs: list[str], opened_q: Any, stop: Any,
                   out: Any) -> None:
    """One client process: SSE streams on ``jobs`` (one per entry), delays sent to ``out``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * len(jobs) + 64)), hard))
    out.put(asyncio.run(_clients(url, key, jobs, opened_q, stop)))


def run(args: argparse.Namespace, url: str, key: str, jobs: list[str], store: SqlJobStore,
        api_pid: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    opened_q, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    streams = [jobs[i % len(jobs)] for i in range(args.streams)]
    parts = [streams[i::args.clients] for i in range(args.clients)]
    procs = [ctx.Process(target=client_process, args=(url, key, part, opened_q, stop, out),
                         daemon=True) for part in parts]
    for proc in procs:
        proc.start()
    started = time.monotonic()
    opened = 0
    while opened < args.streams:
        if time.monotonic() - started > 180:
            raise SystemExit(f"only {opened} of {args.streams} streams opened")
        with contextlib.suppress(queue.Empty):
            opened += opened_q.get(timeout=1)
    print(f"{args.streams} streams open after {time.monotonic() - started:.1f}s "
          f"({args.clients} client processes)")
    time.sleep(2)
    # Baseline: the streams open, no events (keep-alives, the hub's poll timer).
    c0, t0 = cpu_s(api_pid), time.monotonic()
    time.sleep(args.idle_seconds)
    idle_cpu = (cpu_s(api_pid) - c0) / (time.monotonic() - t0)
    # Events flowing.
    c0, t0 = cpu_s(api_pid), time.monotonic()
    counts: list[int] = []
    committed: dict[str, float] = {}
    writers = [threading.Thread(target=lambda part=part, n=n: counts.append(produce(
        store, part, args.rate, args.seconds, committed, f"w{n}")))
        for n, part in enumerate(jobs[i::args.writers] for i in range(args.writers))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    sent = sum(counts)
    time.sleep(1.0)  # the last ones arrive
    busy_wall = time.monotonic() - t0
    busy_cpu = (cpu_s(api_pid) - c0) / busy_wall
    stop.set()
    delays = [received - committed[message] for _ in procs
              for message, received in out.get(timeout=60)]
    for proc in procs:
        proc.join(timeout=10)
    expected = sent * (args.streams // len(jobs))
    ordered = sorted(delays)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    print(f"events written: {sent} ({sent / args.seconds:.0f}/s); deliveries to streams: "
          f"{len(delays)} of {expected} expected")
    print(f"event delay (commit -> client): p50 {pct(0.50):.0f} ms, p99 "
          f"{pct(0.99):.0f} ms, max {ordered[-1] * 1000:.0f} ms, "
          f"mean {statistics.fmean(ordered) * 1000:.0f} ms")
    print(f"API CPU: {idle_cpu * 100:.1f}% of one core with {args.streams} idle streams, "
          f"{busy_cpu * 100:.1f}% with events flowing "
          f"({busy_cpu / max(idle_cpu, 1e-3):.1f}x idle; "
          f"{(busy_cpu - idle_cpu) * busy_wall / max(1, len(delays)) * 1e6:.0f} us per "
          "delivered stream message)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0, help="reports per job per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--writers", type=int, default=2, help="threads playing workers")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="Uvicorn worker processes under the API's Gunicorn")
    parser.add_argument("--postgresql", action="store_true", help="a fresh database on the "
                        "PostgreSQL at 127.0.0.1:5432 (created and dropped) instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp, contextlib.ExitStack() as dbs:
        root = Path(tmp)
        procs = ProcSet(root)
        try:
            redis_server = RedisServer(procs, root, persist=False).start()
            db = (dbs.enter_context(fresh_pg_database()) if args.postgresql
                  else f"sqlite:///{root / 'tidegate.db'}")
            engine = make_engine(db)
            upgrade(engine)
            redis_url = redis_server.url + "/1"  # the state database of the dev environment
            store = SqlJobStore(engine, on_events=StampedPublisher(redis_url))
            key, _ = create_key(store, tenant="bench", secret="bench-secret")
            jobs = []
            for _ in range(args.jobs):
                job, _ = store.create(Job(id=new_job_id(), tenant="bench", type="echo",
                                          priority=Priority.LOW, input={}))
                store.claim(job.id, owner="bench", lease_s=3600)
                jobs.append(job.id)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
            env.update(TIDEGATE_DATABASE_URL=db, TIDEGATE_REDIS_URL=redis_server.url,
                       TIDEGATE_SECRET_KEY="bench-secret", TIDEGATE_DATA_DIR=str(root),
                       TIDEGATE_PORT=str(port), TIDEGATE_SIMULATOR="off")
            api = procs.start("api", [sys.executable, "-m", "tidegate", "api", "--port",
                                      str(port), "--workers", str(args.api_workers)], env,
                              cwd=root)
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30,
                     "API /healthz")
            api_pid = api.pid  # the Gunicorn master: cpu_s() adds its workers
            print(f"API pid {api_pid}; {args.jobs} running jobs, {args.streams} streams, "
                  f"{args.rate:g} reports/s per job")
            run(args, url, key, jobs, store, api_pid)
            engine.dispose()
        finally:
            procs.close()


if __name__ == "__main__":
    main()
