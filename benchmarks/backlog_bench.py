"""Staying fast with a backlog: read and sweep latencies with 100,000 queued jobs and 1,000,000
finished ones in PostgreSQL, against the same calls on an empty database, in one run.

    .venv/bin/python -m benchmarks.backlog_bench                      # about 3 minutes
    .venv/bin/python -m benchmarks.backlog_bench --queued 10000 --finished 100000
    .venv/bin/python -m benchmarks.backlog_bench --explain           # also print query plans

The rows are written with one INSERT ... SELECT FROM generate_series (one `submitted` event
each) into a fresh database (created and dropped here). `tidegate api` (2 processes) serves it
on a private Redis; each route is called `--calls` times one after the other and its p50/p99
printed: `GET /v1/jobs` (first page, a page 50,000 rows deep, `status=failed`), `GET
/v1/jobs/{id}`, `GET /v1/queues`, `GET /metrics`; the sweep's queries run in this process.
Then the submit rate (wrk, as in `submit_bench`) on the loaded database against the empty one,
and once more while `purge` deletes the finished rows, which must not stall submits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from benchmarks.quota_bench import PY, ROOT, Procs, clean_env, log, pg_database, wait_until
from benchmarks.submit_bench import start_redis, wrk
from tidegate.core.cursors import cursor_key, encode_cursor
from tidegate.embedded import free_port

SECRET = "backlog-bench-secret-" + "x" * 32
TENANT = "bench"

FILL = """
INSERT INTO tg_jobs (id, tenant, type, status, priority, input, metadata, progress, message,
                     attempts, max_attempts, checkpoint, cancel_requested, created_at,
                     updated_at, started_at, finished_at, dispatched_at, result)
SELECT md5(:seed || i::text)::uuid::text, :tenant, 'echo', :status, 'medium',
       '{"text": "x"}'::jsonb, '{}'::jsonb, :progress, '', :attempts, 3, '{}'::jsonb, false,
       :t0 - make_interval(secs => i * :spacing_s), :t0 - make_interval(secs => i * :spacing_s),
       CASE WHEN :finished THEN :t0 - make_interval(secs => i * :spacing_s) END,
       CASE WHEN :finished THEN :t0 - make_interval(secs => i * :spacing_s) END,
       :t0 - make_interval(secs => i * :spacing_s),
       CASE WHEN :finished THEN '{"text": "x"}'::jsonb END
FROM generate_series(1, :n) AS i
"""
EVENTS = """
INSERT INTO tg_job_events (job_id, kind, attempt, at, detail)
SELECT id, 'submitted', 0, created_at, '{"priority": "medium"}'::jsonb FROM tg_jobs
"""


def fill(url: str, *, queued: int, finished: int) -> str:
    """Returns the id of one queued job. Finished rows are older than the queued ones, and a
    few of them failed (the dead-letter set), spread through the history."""
    engine = sa.create_engine(url)
    t0 = datetime.now(UTC)
    with engine.begin() as conn:
        for status, n, start, spacing, done in (
                ("queued", queued, t0, 0.01, False),
                ("succeeded", finished, t0 - timedelta(days=10), 0.5, True),
                ("failed", max(finished // 1000, 1), t0 - timedelta(days=10), 500, True)):
            conn.execute(sa.text(FILL), {
                "seed": status, "tenant": TENANT, "status": status, "n": n, "t0": start,
                "spacing_s": spacing, "finished": done, "progress": 100 if done else 0,
                "attempts": 1 if done else 0})
        conn.execute(sa.text(EVENTS))
        conn.execute(sa.text("ANALYZE"))
        one = conn.execute(sa.text(
            "SELECT id FROM tg_jobs WHERE status = 'queued' LIMIT 1")).scalar_one()
    engine.dispose()
    return str(one)


def deep_cursor(url: str, depth: int) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        at, job_id = conn.execute(sa.text(
            "SELECT created_at, id FROM tg_jobs WHERE tenant = :t "
            "ORDER BY created_at DESC, id DESC OFFSET :d LIMIT 1"), {"t": TENANT, "d": depth}).one()
    engine.dispose()
    return encode_cursor((at, job_id), cursor_key(SECRET))


def latency(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    call()  # warm
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def ok(r: httpx.Response) -> httpx.Response:
    r.raise_for_status()
    return r


class Api:
    def __init__(self, procs: Procs, db_url: str, redis_url: str, tmp: Path, label: str) -> None:
        self.procs, self.label = procs, label
        port = free_port()
        self.env = clean_env() | {
            "TIDEGATE_DATABASE_URL": db_url, "TIDEGATE_REDIS_URL": f"{redis_url}/2",
            "TIDEGATE_PORT": str(port), "TIDEGATE_DATA_DIR": str(tmp / label),
            "TIDEGATE_SIMULATOR": "off", "TIDEGATE_SECRET_KEY": SECRET}
        for argv in (["db", "upgrade"], ["keys", "create", "--tenant", TENANT]):
            done = subprocess.run([PY, "-m", "tidegate", *argv], env=self.env, cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"tidegate {' '.join(argv)}: {done.stdout}{done.stderr}")
        self.key = done.stdout.strip().splitlines()[-1]
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=60,
                                 headers={"Authorization": f"Bearer {self.key}"})

    def __enter__(self) -> Api:
        self.procs.start(f"api-{self.label}", [PY, "-m", "tidegate", "api", "--workers", "2"],
                         self.env)
        wait_until("the API", lambda: self.http.get("/readyz").status_code == 200,
                   procs=self.procs)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.procs.stop(lambda n: n == f"api-{self.label}")


def reads(api: Api, url: str, job_id: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    from tidegate.adapters.sql import SqlJobStore, make_engine

    cursor = deep_cursor(url, min(50_000, max(0, args.queued + args.finished - 2)))
    h = api.http
    out = {
        "GET /v1/jobs": latency(lambda: ok(h.get("/v1/jobs")), args.calls),
        "GET /v1/jobs (50,000 deep)": latency(
            lambda: ok(h.get("/v1/jobs", params={"cursor": cursor})), args.calls),
        "GET /v1/jobs?status=failed": latency(
            lambda: ok(h.get("/v1/jobs", params={"status": "failed"})), args.calls),
        "GET /v1/jobs/{id}": latency(lambda: ok(h.get(f"/v1/jobs/{job_id}")), args.calls),
        "GET /v1/queues": latency(lambda: ok(h.get("/v1/queues")), args.calls),
        "GET /metrics": latency(lambda: ok(h.get("/metrics")), args.calls),
    }
    engine = make_engine(url)
    store = SqlJobStore(engine)
    out["sweep: undispatched"] = latency(
        lambda: store.undispatched(grace_s=10, redispatch_after_s=600), args.calls)
    out["sweep: expired leases"] = latency(store.expired_leases, args.calls)
    engine.dispose()
    return out


def explain(url: str) -> None:
    engine = sa.create_engine(url)
    queries = {
        "first page": "SELECT id FROM tg_jobs WHERE tenant = 'bench' "
                      "ORDER BY created_at DESC, id DESC LIMIT 51",
        "dead letters": "SELECT id FROM tg_jobs WHERE tenant = 'bench' AND status = 'failed' "
                        "ORDER BY created_at DESC, id DESC LIMIT 51",
        # What /v1/queues and /metrics count with: the trigger-kept counts (migration 0006).
        "counts": "SELECT status, sum(n) FROM (SELECT status, n FROM tg_job_counts "
                  "WHERE tenant = 'bench' UNION ALL SELECT status, delta FROM "
                  "tg_job_count_deltas WHERE tenant = 'bench') AS c GROUP BY status",
    }
    with engine.connect() as conn:
        for name, q in queries.items():
            plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + q)).scalars().all()
            print(f"\n-- {name}\n" + "\n".join(plan))
    engine.dispose()


def submit_rate(api: Api, seconds: float, tmp: Path) -> dict[str, Any]:
    return wrk(f"{api.base}/v1/jobs", {"type": "echo", "input": {"text": "x"}}, key=api.key,
               seconds=seconds, connections=32, tmp=tmp)


def purge_all(url: str, stop: threading.Event, deleted: list[int]) -> None:
    from tidegate.adapters.sql import SqlJobStore, make_engine

    engine = make_engine(url)
    store = SqlJobStore(engine)
    future = datetime.now(UTC) + timedelta(days=1)
    while not stop.is_set():
        n = store.purge(finished_before=future, failed_before=future)
        deleted.append(n)
        if n == 0:
            break
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200, help="calls per route")
    parser.add_argument("--seconds", type=float, default=10, help="per submit-rate run")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    rates: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tg-backlog-") as name:
        tmp = Path(name)
        procs = Procs(tmp)
        try:
            redis_url = start_redis(procs, tmp)
            with pg_database() as empty_url, Api(procs, empty_url, redis_url, tmp, "empty") as api:
                job_id = ok(api.http.post("/v1/jobs", json={"type": "echo"})).json()["job_id"]
                results["empty"] = reads(api, empty_url, job_id,
                                         argparse.Namespace(**{**vars(args), "queued": 1,
                                                               "finished": 1}))
                rates["empty"] = submit_rate(api, args.seconds, tmp)
            with pg_database() as url:
                Api(procs, url, redis_url, tmp, "migrate")  # creates the tables
                log(f"writing {args.queued:,} queued and {args.finished:,} finished rows")
                t = time.monotonic()
                job_id = fill(url, queued=args.queued, finished=args.finished)
                log(f"written in {time.monotonic() - t:.0f} s")
                if args.explain:
                    explain(url)
                with Api(procs, url, redis_url, tmp, "loaded") as api:
                    results["loaded"] = reads(api, url, job_id, args)
                    rates["loaded"] = submit_rate(api, args.seconds, tmp)
                    stop, deleted = threading.Event(), []
                    purger = threading.Thread(target=purge_all, args=(url, stop, deleted))
                    purger.start()
                    rates["during purge"] = submit_rate(api, args.seconds, tmp)
                    stop.set()
                    purger.join()
                    rates["during purge"]["deleted"] = sum(deleted)
        finally:
            procs.stop()
    print(f"\n{args.queued:,} queued + {args.finished:,} finished jobs in PostgreSQL; "
          f"{args.calls} sequential calls each ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'call':<30} {'empty p50':>10} {'p99 ms':>8} {'loaded p50':>11} {'p99 ms':>8}")
    for call, (p50, p99) in results["loaded"].items():
        e50, e99 = results["empty"][call]
        print(f"{call:<30} {e50:>10.1f} {e99:>8.1f} {p50:>11.1f} {p99:>8.1f}")
    print(f"\n{'submits (wrk, 32 connections)':<30} {'req/s':>8} {'vs empty':>9} {'p99 ms':>8}")
    for label, r in rates.items():
        extra = f"  ({r['deleted']:,} rows purged meanwhile)" if "deleted" in r else ""
        print(f"{label:<30} {r['requests_s']:>8,.0f} "
              f"{r['requests_s'] / rates['empty']['requests_s']:>8.2f}x {r['p99_ms']:>8.1f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
