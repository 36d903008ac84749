"""Running work end to end: no-op jobs through Tidegate against raw Celery, in one run.

    .venv/bin/python -m benchmarks.e2e_bench               # 2,000 jobs each, about 2 minutes
    .venv/bin/python -m benchmarks.e2e_bench --jobs 500

Both run on one private Redis (started here) as broker, with one worker each on the same pool
and concurrency (threads, 8).

- **Raw Celery**: `benchmarks.handwired_app.noop`, sent with `.delay()` from this process in a
  loop, done when the worker has counted every task in Redis. No HTTP, no database: the floor.
- **Tidegate**: `tidegate api` (2 processes) on SQLite or PostgreSQL, `tidegate worker`;
  `echo` jobs with one step (`{"steps": 1}`) submitted over HTTP by 8 client threads, done
  when the job store holds every job as succeeded.

Printed: jobs/s from the first send to the last completion, the ratio against raw Celery, and
the worker's CPU per job (its process tree's user + system time over the run), which does not
depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa

from benchmarks.quota_bench import PY, ROOT, Procs, clean_env, log, pg_database, wait_until
from benchmarks.submit_bench import cpu_seconds, start_redis
from tidegate.embedded import free_port

CONCURRENCY = 8
PROFILE_DIR: Path | None = None  # --profile


@dataclass
class Run:
    system: str
    jobs: int
    seconds: float
    worker_cpu_s: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return self.worker_cpu_s * 1000 / self.jobs


def run_raw_celery(procs: Procs, redis_url: str, jobs: int) -> Run:
    env = clean_env() | {"HANDWIRED_REDIS": redis_url}
    counter = redis.Redis.from_url(f"{redis_url}/1")
    counter.delete("handwired:done")
    worker = procs.start("celery", [str(Path(PY).parent / "celery"), "-A",
                                    "benchmarks.handwired_app:celery", "worker", "-P", "threads",
                                    "-c", str(CONCURRENCY), "--prefetch-multiplier", "1",
                                    "--loglevel", "WARNING", "--without-gossip",
                                    "--without-mingle", "--without-heartbeat"], env)
    # Imported here so that HANDWIRED_REDIS points it at the private server.
    import os

    os.environ["HANDWIRED_REDIS"] = redis_url
    from benchmarks import handwired_app

    handwired_app.celery.conf.broker_url = f"{redis_url}/0"
    wait_until("the Celery worker",
               lambda: bool(handwired_app.celery.control.ping(timeout=0.5)), procs=procs)
    for i in range(50):  # warm-up
        handwired_app.noop.delay(i)
    wait_until("the warm-up", lambda: int(counter.get("handwired:done") or 0) >= 50)
    counter.delete("handwired:done")
    cpu0, t0 = cpu_seconds(worker.pid), time.monotonic()
    for i in range(jobs):
        handwired_app.noop.delay(i)
    wait_until("raw Celery", lambda: int(counter.get("handwired:done") or 0) >= jobs,
               timeout_s=600, procs=procs)
    run = Run("raw Celery (threads, 8)", jobs, time.monotonic() - t0,
              cpu_seconds(worker.pid) - cpu0)
    procs.stop(lambda n: n == "celery")
    return run


def run_tidegate(procs: Procs, label: str, db_url: str, redis_url: str, jobs: int,
                 tmp: Path) -> Run:
    port = free_port()
    env = clean_env() | {"TIDEGATE_DATABASE_URL": db_url, "TIDEGATE_REDIS_URL": f"{redis_url}/2",
                         "TIDEGATE_PORT": str(port), "TIDEGATE_DATA_DIR": str(tmp / label),
                         "TIDEGATE_SIMULATOR": "off", "TIDEGATE_WORKER_POOL": "threads",
                         "TIDEGATE_WORKER_CONCURRENCY": str(CONCURRENCY)}
    for argv in (["db", "upgrade"], ["keys", "create", "--tenant", "bench"]):
        done = subprocess.run([PY, "-m", "tidegate", *argv], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"tidegate {' '.join(argv)}: {done.stdout}{done.stderr}")
    key = done.stdout.strip().splitlines()[-1]
    procs.start(f"tg-api-{label}", [PY, "-m", "tidegate", "api", "--workers", "2"], env)
    worker = procs.start(f"tg-worker-{label}", [PY, "-m", "tidegate", "worker", "--loglevel",
                                                "WARNING"], env)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                        headers={"Authorization": f"Bearer {key}"})
    wait_until("the API", lambda: http.get("/readyz").status_code == 200, procs=procs)
    engine = sa.create_engine(db_url)

    def succeeded() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM tg_jobs WHERE status = 'succeeded'")).scalar_one())

    def submit(n: int) -> None:
        body = {"type": "echo", "input": {"text": "x", "steps": 1}}
        with ThreadPoolExecutor(8) as pool:
            for r in pool.map(lambda _i: http.post("/v1/jobs", json=body), range(n)):
                r.raise_for_status()

    submit(50)  # warm-up: the worker builds its runtime on its first job
    wait_until("the warm-up", lambda: succeeded() >= 50, timeout_s=120, procs=procs)
    spy = None
    if PROFILE_DIR is not None:  # --profile: py-spy samples the worker while it runs the jobs
        spy = subprocess.Popen([str(Path(PY).parent / "py-spy"), "record", "--pid", str(worker.pid), "--format", "raw",
                                "--rate", "200", "--nonblocking", "--gil", "-o",
                                str(PROFILE_DIR / f"worker-{label}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, t0 = cpu_seconds(worker.pid), time.monotonic()
    submit(jobs)
    wait_until(f"Tidegate on {label}", lambda: succeeded() >= jobs + 50, timeout_s=900,
               procs=procs)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    run = Run(f"Tidegate on {label}", jobs, time.monotonic() - t0,
              cpu_seconds(worker.pid) - cpu0)
    engine.dispose()
    procs.stop(lambda n: n.endswith(label))
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--only", choices=["celery", "sqlite", "postgresql"], action="append")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample each Tidegate worker with py-spy (collapsed stacks, "
                        "DIR/worker-<store>.txt; py-spy comes with `make bench-tools`)")
    args = parser.parse_args(argv)
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    if PROFILE_DIR is not None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    chosen = args.only or ["celery", "sqlite", "postgresql"]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tg-e2e-") as name:
        tmp = Path(name)
        procs = Procs(tmp)
        try:
            redis_url = start_redis(procs, tmp)
            if "celery" in chosen:
                runs.append(run_raw_celery(procs, redis_url, args.jobs))
                log(f"{runs[-1].system}: {runs[-1].rate:,.0f} jobs/s")
            if "sqlite" in chosen:
                runs.append(run_tidegate(procs, "sqlite", f"sqlite:///{tmp / 'tg.db'}",
                                         redis_url, args.jobs, tmp))
                log(f"{runs[-1].system}: {runs[-1].rate:,.0f} jobs/s")
            if "postgresql" in chosen:
                with pg_database() as url:
                    runs.append(run_tidegate(procs, "postgresql", url, redis_url, args.jobs,
                                             tmp))
                log(f"{runs[-1].system}: {runs[-1].rate:,.0f} jobs/s")
        finally:
            procs.stop()
    base = next((r for r in runs if r.system.startswith("raw")), None)
    print(f"\n{args.jobs} no-op jobs each ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'system':<26} {'seconds':>8} {'jobs/s':>8} {'ratio':>6} {'worker CPU ms/job':>18}")
    for r in runs:
        ratio = f"{r.rate / base.rate:.2f}x" if base else "-"
        print(f"{r.system:<26} {r.seconds:>8.1f} {r.rate:>8,.0f} {ratio:>6} "
              f"{r.cpu_ms_per_job:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
