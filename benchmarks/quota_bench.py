"""Provider-quota benchmark: the same workload through Tidegate and through a plain Celery
baseline, against the provider simulator with a quota, in one run.

    .venv/bin/python -m benchmarks.quota_bench --scenario all

Scenarios (``--scenario reports|chat|priority|lanes|all``):

* ``reports``: 30 ``startup_report`` jobs (6 sections + a synthesis = 7 calls each, over the
  shipped lanes: openai:gpt-4o-mini 3 calls, anthropic:claude-3-5-haiku-latest 2,
  gemini:gemini-2.0-flash 2), every model at 30 RPM. The baseline's report task makes the same
  7 calls (same prompts, models, max tokens) through the openai SDK.
* ``chat``: 300 ``chat`` jobs (max 512 output tokens) on one lane at 300 RPM and a TPM quota.
* ``priority``: 200 low and medium chats saturate a 60 RPM lane; 20 high-priority chats are
  submitted into it one by one. Wait = when the job's provider call started (its
  ``finished_at`` minus the call's own ``latency_s``) minus when the client submitted it.
* ``lanes``: 240 chats saturate lane A while 180 chats on lane B (same quota) run beside them.

See ``benchmarks/README.md`` for the setup, the baseline and the results.

The theoretical minimum: the simulator (like OpenAI and Anthropic) enforces each quota as a
bucket that holds one minute of quota (C) and refills continuously at C per minute (r). No
client can have D units (requests, or tokens charged as input + max output) admitted before
(D - C) / r after its first call, so makespan_min = max over lanes and limits of
max(0, D - C) / r. It ignores call latency and the order within a report, so it is a lower
bound. Utilisation = units admitted / units the quota made available during the makespan
(C + r x makespan), for the binding lane and limit; it is 100% exactly when the makespan is the
minimum. The naive "calls per minute / RPM" is printed beside it.

Every process is started here and stopped by its PID; Redis DB 11 is flushed (only it), and the
PostgreSQL database is created and dropped here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from tidegate.embedded import free_port
from tidegate.jobs.report import SECTIONS
from tidegate.llm_config import load_llm_config
from tidegate.providers.tokens import estimate_tokens

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
# Flushed by the script: point TIDEGATE_BENCH_REDIS_URL at a database nobody else uses.
REDIS_URL = os.environ.get("TIDEGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TERMINAL = ("succeeded", "failed", "cancelled")
LATENCY = {"latency_min_ms": 100, "latency_max_ms": 300, "per_token_ms": 0}
CHAT_LANE = "anthropic:claude-3-5-haiku-latest"
OTHER_LANE = "openai:gpt-4o-mini"
TIDEGATE_WORKERS, TIDEGATE_CONCURRENCY, BASELINE_WORKERS = 2, 8, 4


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- processes


class Procs:
    """Processes this benchmark started; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.running.append((name, proc))
        return proc

    def stop(self, names: Callable[[str], bool] = lambda _n: True) -> None:
        chosen = [(n, p) for n, p in self.running if names(n)]
        for _n, p in chosen:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for n, p in chosen:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{n} (pid {p.pid}) did not stop, killing it")
                p.kill()
                p.wait()
        self.running = [(n, p) for n, p in self.running if (n, p) not in chosen]

    def check(self) -> None:
        for n, p in self.running:
            if p.poll() is not None:
                tail = (self.logdir / f"{n}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{n} exited with {p.returncode}:\n{tail}")


def wait_until(what: str, ok: Callable[[], bool], timeout_s: float = 60,
               procs: Procs | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if procs is not None:
            procs.check()
        try:
            if ok():
                return
        except (httpx.HTTPError, redis.RedisError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


@contextmanager
def pg_database() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"tidegate_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def clean_env() -> dict[str, str]:
    drop = ("TIDEGATE_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API", "BASELINE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


# ----------------------------------------------------------------------------- simulator


class Simulator:
    def __init__(self, procs: Procs) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        procs.start("simulator", [PY, "-m", "tidegate", "simulate", "--port", str(self.port),
                                  "--seed", "7", "--log-level", "warning"], clean_env())
        self.http = httpx.Client(base_url=self.url, timeout=10)
        wait_until("the simulator", lambda: self.http.get("/_sim/health").status_code == 200,
                   procs=procs)

    def fresh(self, **quota: Any) -> None:
        """Set the quota and latencies, then clear counters and refill every bucket."""
        r = self.http.post("/_sim/config", json={**LATENCY, **quota})
        r.raise_for_status()
        self.http.post("/_sim/reset", json={}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self.http.get("/_sim/stats").json()

    @contextmanager
    def timeline(self, path: Path | None, every_s: float = 0.25) -> Iterator[None]:
        """Sample the per-model counters while the block runs; write them to ``path``."""
        if path is None:
            yield
            return
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        http = httpx.Client(base_url=self.url, timeout=10)

        def sample() -> None:
            t0 = time.time()
            while not stop.wait(every_s):
                st = http.get("/_sim/stats").json()
                samples.append({"t": round(time.time() - t0, 3), **{
                    m: [row["ok"], row["rate_limited"]] for m, row in st["by_model"].items()}})

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            http.close()
            path.write_text(json.dumps(samples))


# ----------------------------------------------------------------------------- workloads


@dataclass
class Ctx:
    procs: Procs
    sim: Simulator
    db_url: str
    tmp: Path
    baseline: bool
    out: list[str]
    timelines: Path | None = None  # where to write per-run admission timelines
    sdk_retries: int = 0  # the baseline's openai SDK max_retries

    def timeline(self, name: str) -> Path | None:
        return self.timelines / f"{name}.json" if self.timelines else None




@dataclass
class Lane:
    name: str  # "provider:model" (Tidegate's lane; the baseline calls the same model name)
    rpm: int
    tpm: int = 0  # 0: no token quota
    calls: int = 0  # demand in this scenario
    tokens: int = 0  # charged as the simulator charges: input + max output


@dataclass
class Job:
    type: str
    input: dict[str, Any]
    priority: str | None = None
    tag: str = ""
    submitted: float = 0.0  # client clock, epoch seconds
    id: str = ""
    units: float = 0.0  # what it needs of the binding quota (calls or tokens)
    record: dict[str, Any] = field(default_factory=dict)


def report_jobs(n: int) -> list[Job]:
    return [Job("startup_report", {"startup": f"Startup {i:03d} Robotics"}) for i in range(n)]


def chat_text(i: int) -> str:
    return (f"Question {i}: what are three practical ways a small team can reduce the cost "
            f"of running LLM workloads in production without hurting quality?")


def chat_jobs(n: int, *, max_tokens: int, priority: str | None = None, tag: str = "",
              model: str | None = None, offset: int = 0) -> list[Job]:
    out = []
    for i in range(offset, offset + n):
        inp: dict[str, Any] = {"message": chat_text(i), "max_output_tokens": max_tokens}
        if model:
            inp["model"] = model
        out.append(Job("chat", inp, priority, tag))
    return out


def report_lanes(n: int, rpm: int) -> list[Lane]:
    cfg = load_llm_config(None)
    lanes: dict[str, Lane] = {}
    for step in [key for key, _, _ in SECTIONS] + ["synthesis"]:
        name = cfg.default_model("startup_report", step)
        lanes.setdefault(name, Lane(name, rpm)).calls += n
    return list(lanes.values())


def minimum_s(lanes: list[Lane]) -> tuple[float, Lane, str]:
    """(seconds, binding lane, binding limit): max over lanes and limits of (D - C) / r."""
    best: tuple[float, Lane, str] = (0.0, lanes[0], "rpm")
    for ln in lanes:
        for kind, demand, quota in (("rpm", ln.calls, ln.rpm), ("tpm", ln.tokens, ln.tpm)):
            if quota:
                t = max(0.0, demand - quota) * 60 / quota
                if t > best[0] or (t == best[0] and kind == "rpm" and ln is best[1]):
                    best = (t, ln, kind)
    return best


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    system: str
    jobs: int
    succeeded: int
    failed: int
    other: int
    requests: int  # provider calls the simulator received
    rate_limited: int
    ok: int
    makespan_s: float
    lane_ok: int  # admitted calls on the binding lane
    lane_tokens: int  # tokens charged on the binding lane
    useful: float  # binding-quota units that went to jobs that succeeded
    notes: list[str] = field(default_factory=list)


def lane_counts(stats: dict[str, Any], lane: str, max_tokens: int) -> tuple[int, int]:
    """(calls admitted, tokens charged) on a lane, whichever vendor route carried it."""
    model = lane.partition(":")[2]
    ok = inp = 0
    for key, row in stats["by_model"].items():
        if key.partition(":")[2] == model:
            ok += row["ok"] + row["server_errors"] + row["hangs"] + row["malformed"]
            inp += row["input_tokens"]
    return ok, inp + ok * max_tokens


def summarize(res: Result, lanes: list[Lane]) -> dict[str, Any]:
    t_min, lane, kind = minimum_s(lanes)
    quota = lane.rpm if kind == "rpm" else lane.tpm
    used = res.lane_ok if kind == "rpm" else res.lane_tokens
    available = quota + quota / 60 * res.makespan_s
    per_min = res.lane_ok / (res.makespan_s / 60) if res.makespan_s else 0.0
    ratio = f"{res.makespan_s / t_min:.2f}x" if t_min else "-"
    return {
        "system": res.system, "jobs": res.jobs, "succeeded": res.succeeded,
        "failed": res.failed + res.other, "calls": res.requests, "429s": res.rate_limited,
        "429 %": 100 * res.rate_limited / max(1, res.requests),
        "binding": f"{lane.name} {kind} {quota}",
        "calls/min": per_min, "calls/min / RPM": per_min / lane.rpm,
        "utilisation": used / available if available else 0.0,
        "useful utilisation": res.useful / available if available else 0.0,
        "makespan s": res.makespan_s, "minimum s": t_min,
        # A run that failed jobs did less than the workload the minimum is for.
        "makespan / min": ratio + ("*" if res.failed + res.other else ""),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> str:
    cols = ["jobs", "succeeded", "failed", "calls", "429s", "429 %", "calls/min",
            "calls/min / RPM", "utilisation", "useful utilisation", "makespan s", "minimum s",
            "makespan / min"]
    fmt = {"429 %": "{:.1f}%", "calls/min": "{:.1f}", "calls/min / RPM": "{:.2f}",
           "utilisation": "{:.1%}", "useful utilisation": "{:.1%}", "makespan s": "{:.1f}",
           "minimum s": "{:.1f}"}
    width = max(len(c) for c in cols) + 2
    lines = [title, f"  binding quota: {rows[0]['binding']}",
             " " * width + "".join(f"{r['system']:>14}" for r in rows)]
    for c in cols:
        cells = "".join(f"{fmt.get(c, '{}').format(r[c]):>14}" for r in rows)
        lines.append(f"  {c:<{width - 2}}{cells}")
    if any(str(r["makespan / min"]).endswith("*") for r in rows):
        lines.append("  * failed jobs: that run did less work than the minimum is computed for")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# ----------------------------------------------------------------------------- Tidegate


def iso(ts: str | None) -> float | None:
    return datetime.fromisoformat(ts).timestamp() if ts else None


class Tidegate:
    """API, two workers and the scheduler, on Redis DB 11 and a PostgreSQL database."""

    def __init__(self, procs: Procs, sim: Simulator | None, db_url: str,
                 llm_config: str | None, tmp: Path, extra_env: dict[str, str] | None = None
                 ) -> None:
        """``sim`` None: no simulator (``extra_env`` names the providers); ``llm_config`` None:
        the shipped LLM settings only."""
        self.procs = procs
        port = free_port()
        self.env = clean_env() | {
            "TIDEGATE_REDIS_URL": REDIS_URL, "TIDEGATE_DATABASE_URL": db_url,
            "TIDEGATE_SIMULATOR": "off", "TIDEGATE_AUTH": "off",
            "TIDEGATE_PORT": str(port), "TIDEGATE_DATA_DIR": str(tmp / "data"),
            "TIDEGATE_WORKER_CONCURRENCY": str(TIDEGATE_CONCURRENCY)} | (extra_env or {})
        if sim is not None:
            self.env["TIDEGATE_SIMULATOR_URL"] = sim.url
        if llm_config is not None:
            self.env["TIDEGATE_LLM_CONFIG"] = llm_config
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def start(self) -> None:
        redis.Redis.from_url(REDIS_URL).flushdb()
        up = subprocess.run([PY, "-m", "tidegate", "db", "upgrade"], env=self.env, cwd=ROOT,
                            capture_output=True, text=True)
        if up.returncode:
            raise RuntimeError(f"db upgrade failed: {up.stdout}{up.stderr}")
        self.procs.start("tg-api", [PY, "-m", "tidegate", "api"], self.env)
        for i in range(TIDEGATE_WORKERS):
            self.procs.start(f"tg-worker{i}", [PY, "-m", "tidegate", "worker", "--name",
                                               f"tg{i}@bench", "--loglevel", "WARNING"],
                             self.env)
        self.procs.start("tg-beat", [PY, "-m", "tidegate", "beat"], self.env)
        wait_until("the API", lambda: self.http.get("/readyz").status_code == 200,
                   procs=self.procs)
        from tidegate.adapters.celery_app import create_celery
        from tidegate.config import load_settings

        app = create_celery(load_settings(redis_url=REDIS_URL))
        wait_until("two workers", lambda: len(app.control.ping(timeout=0.5)) >= TIDEGATE_WORKERS,
                   procs=self.procs)
        # Each worker builds its runtime (database pool, SDK clients) on its first job.
        warm = [Job("echo", {"text": "warm-up", "sleep_s": 1}) for _ in range(
            TIDEGATE_WORKERS * TIDEGATE_CONCURRENCY)]
        self.submit(warm)
        self.wait(warm, timeout_s=60)

    def stop(self) -> None:
        self.procs.stop(lambda n: n.startswith("tg-"))

    def submit(self, jobs: list[Job], threads: int = 8) -> None:
        def one(job: Job) -> None:
            body: dict[str, Any] = {"type": job.type, "input": job.input}
            if job.priority:
                body["priority"] = job.priority
            job.submitted = time.time()
            r = self.http.post("/v1/jobs", json=body)
            r.raise_for_status()
            job.id = r.json()["job_id"]

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, jobs))

    def refresh(self, jobs: list[Job]) -> None:
        wanted = {j.id: j for j in jobs if j.id}
        cursor = None
        seen = 0
        while seen < len(wanted):
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get("/v1/jobs", params=params).json()
            for rec in page["jobs"]:
                if rec["job_id"] in wanted:
                    wanted[rec["job_id"]].record = rec
                    seen += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break

    def wait(self, jobs: list[Job], timeout_s: float, poll_s: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.procs.check()
            self.refresh(jobs)
            if all(j.record.get("status") in TERMINAL for j in jobs):
                return True
            time.sleep(poll_s)
        return False


def tidegate_config(tmp: Path, name: str, lanes: list[Lane]) -> str:
    shipped = load_llm_config(None)
    lines = []
    for ln in lanes:
        conc = shipped.lane_limits(ln.name).concurrency
        lines.append(f'[lanes."{ln.name}"]\nrpm = {ln.rpm}\n'
                     + (f"tpm = {ln.tpm}\n" if ln.tpm else "")
                     + (f"concurrency = {conc}\n" if conc else ""))
    # No fallback to a lane with a quota of its own: both systems get exactly the same quota.
    lines.append("[jobs.startup_report]\nfallbacks = []\n\n[jobs.chat]\nfallbacks = []\n")
    path = tmp / f"llm-{name}.toml"
    path.write_text("\n".join(lines))
    return str(path)


def run_tidegate(ctx: Ctx, label: str, lanes: list[Lane], jobs: list[Job],
                 quota: dict[str, Any], timeout_s: float, max_tokens: int) -> Result:
    sim = ctx.sim
    tg = Tidegate(ctx.procs, sim, ctx.db_url, tidegate_config(ctx.tmp, label, lanes), ctx.tmp)
    log(f"{label}: starting Tidegate (API, {TIDEGATE_WORKERS} workers, scheduler)")
    tg.start()
    try:
        sim.fresh(**quota)
        log(f"{label}: Tidegate: submitting {len(jobs)} jobs")
        t0 = time.time()
        with sim.timeline(ctx.timeline(f"{label}-tidegate")):
            tg.submit(jobs)
            done = tg.wait(jobs, timeout_s)
        stats = sim.stats()
    finally:
        tg.stop()
    return tidegate_result(jobs, stats, t0, done, lanes, max_tokens)


def tidegate_result(jobs: list[Job], stats: dict[str, Any], t0: float, done: bool,
                    lanes: list[Lane], max_tokens: int) -> Result:
    status = [j.record.get("status") for j in jobs]
    ends = [iso(j.record.get("finished_at")) for j in jobs]
    end = max((e for e in ends if e is not None), default=time.time())
    _t, lane, _k = minimum_s(lanes)
    ok, tokens = lane_counts(stats, lane.name, max_tokens)
    useful = sum(j.units for j in jobs if j.record.get("status") == "succeeded")
    res = Result("Tidegate", len(jobs), status.count("succeeded"), status.count("failed"),
                 len(jobs) - status.count("succeeded") - status.count("failed"),
                 stats["total"]["requests"], stats["total"]["rate_limited"], stats["total"]["ok"],
                 end - t0, ok, tokens, useful)
    if not done:
        res.notes.append("timed out before every job ended")
    attempts = [j.record.get("attempts", 0) for j in jobs]
    res.notes.append(f"attempts per job: max {max(attempts, default=0)}")
    return res


# ----------------------------------------------------------------------------- baseline


def run_baseline(ctx: Ctx, label: str, quota: dict[str, Any], task: str, jobs: list[Job],
                 args: Callable[[Job], list[Any]], rate_limit: str, timeout_s: float,
                 lanes: list[Lane], max_tokens: int) -> Result:
    from celery import Celery

    procs, sim = ctx.procs, ctx.sim
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    env = clean_env() | {"BASELINE_BROKER_URL": REDIS_URL, "BASELINE_SIMULATOR_URL": sim.url,
                         "BASELINE_RATE_LIMIT": rate_limit, "BASELINE_MAX_RETRIES": "3",
                         "BASELINE_SDK_RETRIES": str(ctx.sdk_retries)}
    log(f"{label}: starting the baseline ({BASELINE_WORKERS} Celery workers, "
        f"rate_limit={rate_limit} each, SDK max_retries={ctx.sdk_retries})")
    for i in range(BASELINE_WORKERS):
        procs.start(f"bl-worker{i}", [
            PY, "-m", "celery", "-A", "benchmarks.celery_baseline", "worker", "-P", "solo",
            "-n", f"bl{i}@bench", "-Q", "baseline", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING"], env)
    app = Celery("baseline", broker=REDIS_URL)
    try:
        wait_until("four baseline workers",
                   lambda: len(app.control.ping(timeout=0.5)) >= BASELINE_WORKERS, procs=procs)
        sim.fresh(**quota)
        log(f"{label}: baseline: submitting {len(jobs)} tasks")
        t0 = time.time()
        done = False
        with sim.timeline(ctx.timeline(f"{label}-baseline")):
            ids = [app.send_task(task, args=args(j), queue="baseline").id for j in jobs]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                procs.check()
                if r.hlen("baseline:done") >= len(ids):
                    done = True
                    break
                time.sleep(1)
        stats = sim.stats()
        outcomes = {k.decode(): json.loads(v) for k, v in r.hgetall("baseline:done").items()}
    finally:
        procs.stop(lambda n: n.startswith("bl-"))
        app.close()
    ends = [o["t"] for o in outcomes.values()]
    st = [outcomes.get(i, {}).get("status") for i in ids]
    _t, lane, _k = minimum_s(lanes)
    ok, tokens = lane_counts(stats, lane.name, max_tokens)
    useful = sum(j.units for j, s in zip(jobs, st, strict=True) if s == "succeeded")
    res = Result("Celery", len(ids), st.count("succeeded"), st.count("failed"),
                 len(ids) - st.count("succeeded") - st.count("failed"),
                 stats["total"]["requests"], stats["total"]["rate_limited"], stats["total"]["ok"],
                 (max(ends) if ends else time.time()) - t0, ok, tokens, useful)
    if not done:
        res.notes.append(f"timed out: {len(ids) - len(outcomes)} tasks still retrying")
    return res


# ----------------------------------------------------------------------------- scenarios


def scenario_reports(ctx: Ctx, n: int = 30, rpm: int = 30) -> None:
    lanes = report_lanes(n, rpm)
    quota = {"rpm": rpm, "tpm": 0}
    jobs = report_jobs(n)
    per_task = minimum_s(lanes)[1].calls // n  # calls per report on the binding lane
    for j in jobs:
        j.units = per_task
    rows = [run_tidegate(ctx, "reports", lanes, jobs, quota, 360, 0)]
    if ctx.baseline:
        rows.append(run_baseline(ctx, "reports", quota, "baseline.report", jobs,
                                 lambda j: [j.input["startup"]], f"{rpm // per_task}/m", 360,
                                 lanes, 0))
    title = (f"(i) {n} startup reports (7 calls each) against {rpm} RPM per model; "
             + ", ".join(f"{ln.name}: {ln.calls} calls" for ln in lanes))
    finish(ctx, title, rows, lanes)


def scenario_chat(ctx: Ctx, n: int = 300, rpm: int = 300, tpm: int = 64_000,
                  max_tokens: int = 512) -> None:
    jobs = chat_jobs(n, max_tokens=max_tokens)
    for j in jobs:
        j.units = estimate_tokens(j.input["message"]) + max_tokens  # as the simulator charges
    tokens = int(sum(j.units for j in jobs))
    lanes = [Lane(CHAT_LANE, rpm, tpm, n, tokens)]
    quota = {"rpm": rpm, "tpm": tpm}
    rows = [run_tidegate(ctx, "chat", lanes, jobs, quota, 360, max_tokens)]
    if ctx.baseline:
        rows.append(run_baseline(ctx, "chat", quota, "baseline.chat", jobs,
                                 lambda j: [j.input["message"], max_tokens], f"{rpm}/m", 360,
                                 lanes, max_tokens))
    title = (f"(ii) {n} chat jobs (max {max_tokens} output tokens) against {rpm} RPM and "
             f"{tpm} TPM on {CHAT_LANE}; {tokens} tokens charged in all")
    finish(ctx, title, rows, lanes)


def finish(ctx: Ctx, title: str, rows: list[Result], lanes: list[Lane]) -> None:
    text = print_table(title, [summarize(r, lanes) for r in rows])
    notes = [f"  {r.system}: {n}" for r in rows for n in r.notes]
    if notes:
        print("\n".join(notes), flush=True)
    ctx.out.append(text + ("\n" + "\n".join(notes) if notes else ""))


def scenario_priority(ctx: Ctx, backlog: int = 200, probes: int = 20, rpm: int = 60,
                      spacing_s: float = 5.0, settle_s: float = 10.0) -> None:
    lanes = [Lane(CHAT_LANE, rpm, 0, backlog + probes)]
    tg = Tidegate(ctx.procs, ctx.sim, ctx.db_url, tidegate_config(ctx.tmp, "priority", lanes),
                  ctx.tmp)
    log("priority: starting Tidegate")
    tg.start()
    try:
        ctx.sim.fresh(rpm=rpm, tpm=0)
        queued = [j for i in range(backlog // 2) for j in (
            *chat_jobs(1, max_tokens=64, priority="low", tag="low", offset=2 * i),
            *chat_jobs(1, max_tokens=64, priority="medium", tag="medium", offset=2 * i + 1))]
        log(f"priority: {len(queued)} low and medium chats, then {probes} high ones")
        t0 = time.time()
        sent: list[Job] = []
        with ctx.sim.timeline(ctx.timeline("priority-tidegate")):
            tg.submit(queued)
            time.sleep(settle_s)  # the lane's first minute of quota is spent: it is saturated
            for i in range(probes):
                probe = chat_jobs(1, max_tokens=64, tag="probe", offset=10_000 + i)
                tg.submit(probe, threads=1)
                sent += probe
                time.sleep(spacing_s)
            tg.wait(sent, 60, poll_s=0.5)
        elapsed = time.time() - t0
        tg.refresh(queued)
        stats = ctx.sim.stats()
    finally:
        tg.stop()
    waits, claims = [], []
    for p in sent:
        rec = p.record
        if rec.get("status") != "succeeded":
            continue
        call_start = float(iso(rec["finished_at"]) or 0) - rec["result"]["latency_s"]
        waits.append(call_start - p.submitted)
        claims.append(float(iso(rec["started_at"]) or 0) - p.submitted)
    left = sum(1 for j in queued if j.record.get("status") not in TERMINAL)
    done_low = sum(1 for j in queued if j.tag == "low" and j.record.get("status") == "succeeded")
    done_med = sum(1 for j in queued
                   if j.tag == "medium" and j.record.get("status") == "succeeded")
    p95 = percentile(waits, 95)
    text = "\n".join([
        f"(iii) high-priority chats into {CHAT_LANE} ({rpm} RPM) saturated by {backlog} low and "
        f"medium chats",
        f"  probes succeeded: {len(waits)}/{probes}; wait for the first provider call (s): "
        f"p50 {percentile(waits, 50):.2f}, p95 {p95:.2f}, max {max(waits, default=0):.2f}"
        f"  -> {'met' if p95 < 1 and len(waits) == probes else 'NOT met'} (target p95 < 1 s)",
        f"  wait until a worker claimed it (s): p50 {percentile(claims, 50):.2f}, "
        f"p95 {percentile(claims, 95):.2f}",
        f"  backlog while probing: {done_med} medium and {done_low} low done, {left} still "
        f"waiting after {elapsed:.0f} s; simulator: {stats['total']['requests']} calls, "
        f"{stats['total']['rate_limited']} 429s"])
    print(text, flush=True)
    ctx.out.append(text)


def scenario_lanes(ctx: Ctx, saturating: int = 240, other: int = 180, rpm: int = 60) -> None:
    a = Lane(CHAT_LANE, rpm, 0, saturating)
    b = Lane(OTHER_LANE, rpm, 0, other)
    tg = Tidegate(ctx.procs, ctx.sim, ctx.db_url, tidegate_config(ctx.tmp, "lanes", [a, b]),
                  ctx.tmp)
    log("lanes: starting Tidegate")
    tg.start()
    try:
        ctx.sim.fresh(rpm=rpm, tpm=0)
        jobs_a = chat_jobs(saturating, max_tokens=64, priority="medium", tag="a")
        jobs_b = chat_jobs(other, max_tokens=64, priority="medium", tag="b", model=OTHER_LANE,
                           offset=saturating)
        t0 = time.time()
        with ctx.sim.timeline(ctx.timeline("lanes-tidegate")):
            tg.submit(jobs_a)
            t_b = time.time()
            tg.submit(jobs_b)
            tg.wait(jobs_b, 300)
        elapsed = time.time() - t0
        tg.refresh(jobs_a)
        stats = ctx.sim.stats()
    finally:
        tg.stop()
    ends_b = sorted(e for e in (iso(j.record.get("finished_at")) for j in jobs_b) if e)
    ok_b = sum(1 for j in jobs_b if j.record.get("status") == "succeeded")
    span_b = (ends_b[-1] if ends_b else time.time()) - t_b
    # After its first minute of quota (the burst), lane B's own pace in calls per minute.
    pace_b = ((len(ends_b) - rpm) / (ends_b[-1] - ends_b[rpm - 1]) * 60
              if len(ends_b) > rpm else float("nan"))
    t_min_b = minimum_s([b])[0]
    done_a = sum(1 for j in jobs_a if j.record.get("status") == "succeeded")
    a_calls, _ = lane_counts(stats, a.name, 0)
    b_calls, _ = lane_counts(stats, b.name, 0)
    text = "\n".join([
        f"(iv) {other} chats on {b.name} ({rpm} RPM) while {saturating} chats saturate "
        f"{a.name} ({rpm} RPM), same priority, submitted first",
        f"  lane B: {ok_b}/{other} succeeded in {span_b:.1f} s; its own minimum "
        f"{t_min_b:.1f} s -> {span_b / t_min_b:.2f}x; utilisation "
        f"{b_calls / (rpm + rpm / 60 * span_b):.1%}; after its burst it ran at "
        f"{pace_b:.1f} calls/min",
        f"  lane A meanwhile: {done_a}/{saturating} done ({a_calls} calls admitted over "
        f"{elapsed:.0f} s, quota allows {rpm + rpm / 60 * elapsed:.0f}); "
        f"simulator: {stats['total']['rate_limited']} 429s"])
    print(text, flush=True)
    ctx.out.append(text)


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "reports": scenario_reports, "chat": scenario_chat, "priority": scenario_priority,
    "lanes": scenario_lanes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all"])
    parser.add_argument("--no-baseline", action="store_true", help="Tidegate only")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    parser.add_argument("--sdk-retries", type=int, default=0,
                        help="the baseline's openai SDK max_retries (default 0: only Celery "
                        "retries, as autoretry_for intends; the SDK's own default is 2)")
    parser.add_argument("--timelines", type=Path, default=None,
                        help="write per-run admission timelines (JSON) to this directory")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    tmp = Path(tempfile.mkdtemp(prefix="tidegate-bench-"))
    procs = Procs(tmp)
    out: list[str] = []
    try:
        with pg_database() as db_url:
            sim = Simulator(procs)
            ctx = Ctx(procs, sim, db_url, tmp, not args.no_baseline, out, args.timelines,
                      args.sdk_retries)
            if args.timelines:
                args.timelines.mkdir(parents=True, exist_ok=True)
            for name in names:
                started = time.monotonic()
                SCENARIOS[name](ctx)
                log(f"{name}: done in {time.monotonic() - started:.0f} s")
    finally:
        wind_up(procs, tmp, keep_logs=args.keep_logs)
    print("\n===== summary =====\n" + "\n\n".join(out))
    return 0


def wind_up(procs: Procs, tmp: Path, *, keep_logs: bool) -> None:
    """Stop every process the run started, flush its Redis database, drop (or keep) logs."""
    procs.stop()
    redis.Redis.from_url(REDIS_URL).flushdb()
    if keep_logs:
        log(f"logs in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
