"""Fair shares of a lane: tenant B's latency with and without tenant A's backlog.

Tenant A submits ``--backlog`` chats (default 300), then tenant B submits ``--probes`` (10), on
one lane of the provider simulator with a quota (``--rpm``, default 120: after its first
minute's burst the lane, not the workers, is what A's backlog waits for). Printed: B's p50/max
time from submit to finish, alone and behind A's backlog, and where A's backlog stood when B
finished. The stack is quota_bench's (API, two workers, scheduler, PostgreSQL, the simulator).

    TIDEGATE_BENCH_REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python -m benchmarks.fairness_bench [--backlog 300] [--probes 10] [--rpm 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks import quota_bench as qb


def _keys(db_url: str) -> dict[str, str]:
    from tidegate.adapters.sql import SqlJobStore, make_engine
    from tidegate.config import DEFAULT_SECRET
    from tidegate.core.keys import create_key

    engine = make_engine(db_url)
    try:
        store = SqlJobStore(engine)
        return {t: create_key(store, tenant=t, secret=DEFAULT_SECRET)[0] for t in ("a", "b")}
    finally:
        engine.dispose()


def _submit(http: httpx.Client, key: str, jobs: list[qb.Job]) -> None:
    for job in jobs:
        job.submitted = time.time()
        r = http.post("/v1/jobs", json={"type": job.type, "input": job.input},
                      headers={"Authorization": f"Bearer {key}"})
        r.raise_for_status()
        job.id = r.json()["job_id"]


def _status(http: httpx.Client, key: str, jobs: list[qb.Job]) -> None:
    for job in jobs:
        job.record = http.get(f"/v1/jobs/{job.id}",
                              headers={"Authorization": f"Bearer {key}"}).json()


def run(ctx: qb.Ctx, *, backlog: int, probes: int, rpm: int) -> dict[str, Any]:
    lanes = [qb.Lane(qb.CHAT_LANE, rpm, 0, backlog + probes)]
    tg = qb.Tidegate(ctx.procs, ctx.sim, ctx.db_url,
                     qb.tidegate_config(ctx.tmp, f"fair{backlog}", lanes), ctx.tmp)
    tg.env["TIDEGATE_AUTH"] = "on"
    # Keys need the migrated database; start() migrates again (a no-op) and its warm-up
    # submits with the client's default header, tenant A's key.
    up = subprocess.run([qb.PY, "-m", "tidegate", "db", "upgrade"], env=tg.env, cwd=qb.ROOT,
                        capture_output=True, text=True)
    if up.returncode:
        raise RuntimeError(up.stdout + up.stderr)
    keys = _keys(ctx.db_url)
    tg.http.headers["Authorization"] = f"Bearer {keys['a']}"
    tg.start()
    try:
        ctx.sim.fresh(rpm=rpm, tpm=0)
        a_jobs = qb.chat_jobs(backlog, max_tokens=64, tag="a")
        b_jobs = qb.chat_jobs(probes, max_tokens=64, tag="b", offset=10_000)
        _submit(tg.http, keys["a"], a_jobs)
        _submit(tg.http, keys["b"], b_jobs)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            _status(tg.http, keys["b"], b_jobs)
            if all(j.record.get("status") in qb.TERMINAL for j in b_jobs):
                break
            time.sleep(0.5)
        b_done_at = time.time()
        _status(tg.http, keys["a"], a_jobs)
        a_left = sum(1 for j in a_jobs if j.record.get("status") not in qb.TERMINAL)
    finally:
        tg.stop()
    lat = sorted(float(qb.iso(j.record.get("finished_at")) or b_done_at) - j.submitted
                 for j in b_jobs)
    return {"backlog": backlog, "p50": qb.percentile(lat, 50), "max": lat[-1],
            "a_left": a_left, "ok": sum(j.record.get("status") == "succeeded" for j in b_jobs)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backlog", type=int, default=300)
    p.add_argument("--probes", type=int, default=10)
    p.add_argument("--rpm", type=int, default=120)
    args = p.parse_args()
    qb.REDIS_URL = os.environ.get("TIDEGATE_BENCH_REDIS_URL", qb.REDIS_URL)
    tmp = Path(tempfile.mkdtemp(prefix="tidegate-fair-"))
    procs = qb.Procs(tmp)
    rows = []
    try:
        for backlog in (0, args.backlog):
            with qb.pg_database() as db_url:
                sim = qb.Simulator(procs)
                ctx = qb.Ctx(procs, sim, db_url, tmp, False, [])
                rows.append(run(ctx, backlog=backlog, probes=args.probes, rpm=args.rpm))
                procs.stop(lambda n: n == "simulator")
    finally:
        procs.stop()
        redis.Redis.from_url(qb.REDIS_URL).flushdb()
        shutil.rmtree(tmp, ignore_errors=True)
    alone, behind = rows
    print(f"tenant B, {args.probes} chats on one {args.rpm} RPM lane:")
    for r in rows:
        print(f"  behind {r['backlog']:>4} of A's chats: p50 {r['p50']:.2f} s, max "
              f"{r['max']:.2f} s ({r['ok']}/{args.probes} succeeded; A still waiting: "
              f"{r['a_left']})")
    print(f"  ratio (behind / alone, p50): {behind['p50'] / max(alone['p50'], 1e-3):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
