"""Tidegate on several hosts of a :class:`Network`: the services host (PostgreSQL, Redis,
RabbitMQ, the provider simulator), an API host, worker hosts and scheduler hosts.

Built on the fault suite's machinery (owned processes, private services, the ledger); every
process is started on its host through :meth:`Network.wrap` and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.fault.harness import PY, PgCluster, Proc, ProcSet, RabbitServer, RedisServer, Stack

from .netns import Network

SERVICES, API = "svc", "api"
WORKERS = ("w1", "w2")
SCHEDULERS = ("s1", "s2")
HOSTS = [SERVICES, API, *WORKERS, *SCHEDULERS, "client"]  # the test itself is the client
SIM_PORT, API_PORT = 8400, 8000
LEADS = "scheduler is the leader"

# What the operations guide recommends for a production PostgreSQL: a vanished client's idle
# session goes within seconds, not after the kernel's two hours. (A session idle inside a
# transaction is ended by the idle-in-transaction timeout Tidegate's own sessions set.)
PG_DEAD_CLIENT = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                  "-c tcp_keepalives_count=3 -c tcp_user_timeout=30000")


class Services:
    """The services host's private instances. The broker Redis is its own instance when the
    broker is Redis, so that restarting the broker leaves the shared state (limiter) alone."""

    def __init__(self, net: Network, procs: ProcSet, root: Path, broker: str) -> None:
        self.net, self.procs, self.root, self.broker = net, procs, root, broker
        host = net.address(SERVICES)

        def wrap(argv: list[str]) -> list[str]:
            return net.wrap(SERVICES, argv)

        self.pg = PgCluster(host=host, wrap=wrap)
        self.state = RedisServer(procs, root, host=host, wrap=wrap, port=6379)
        self.broker_redis = (RedisServer(procs, root, host=host, wrap=wrap, port=6380)
                             if broker == "redis" else None)
        self.rabbit = (RabbitServer(procs, root, host=host, wrap=wrap)
                       if broker == "amqp" else None)
        self.sim_url = f"http://{host}:{SIM_PORT}"

    def start(self, sim_args: list[str]) -> Services:
        self.sim = self.procs.start("simulator", self.net.wrap(SERVICES, [
            PY, "-m", "tidegate", "simulate", "--host", self.net.address(SERVICES),
            "--port", str(SIM_PORT), "--log-level", "warning", *sim_args]), dict(os.environ))
        self.pg.init()
        self.pg.start(PG_DEAD_CLIENT)
        self.state.start()
        if self.broker_redis is not None:
            self.broker_redis.start()
        if self.rabbit is not None:
            self.rabbit.start(timeout_s=90)
        from tidegate.adapters.sql import make_engine
        from tidegate.adapters.sql.migrate import upgrade

        engine = make_engine(self.pg.url)
        upgrade(engine)
        engine.dispose()
        return self

    @property
    def broker_url(self) -> str:
        if self.rabbit is not None:
            return self.rabbit.url
        assert self.broker_redis is not None
        return self.broker_redis.url + "/0"

    def restart_broker(self) -> None:
        if self.rabbit is not None:
            self.rabbit.stop()
            self.rabbit.start(timeout_s=90)
        else:
            assert self.broker_redis is not None
            self.broker_redis.kill()
            self.broker_redis.start()

    def sim_stats(self) -> dict[str, Any]:
        return httpx.get(self.sim_url + "/_sim/stats", timeout=5).json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.pg.destroy()


class Fleet(Stack):
    """The Tidegate processes, each on its host."""

    def __init__(self, net: Network, procs: ProcSet, root: Path, services: Services,
                 env: dict[str, str]) -> None:
        super().__init__(procs, root, broker=services.broker, broker_url=services.broker_url,
                         redis_url=services.state.url, database_url=services.pg.url,
                         env={"TIDEGATE_SIMULATOR_URL": services.sim_url, **env})
        self.net = net
        self.api_port = API_PORT
        self.on: dict[str, list[Proc]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.net.address(API)}:{self.api_port}"

    def start_on(self, host: str, name: str, role: str, *args: str) -> Proc:
        proc = self.procs.start(name, self.net.wrap(host, [PY, "-m", "tidegate", role, *args]),
                                {**self.env, "TIDEGATE_HOST": self.net.address(host)},
                                cwd=self.root)
        self.on.setdefault(host, []).append(proc)
        return proc

    def start_fleet(self, *, concurrency: int) -> None:
        self.api = self.start_on(API, "api", "api", "--port", str(self.api_port))
        self.workers = [self.start_on(h, f"worker-{h}", "worker", "-c", str(concurrency),
                                      "--pool", "threads") for h in WORKERS]
        self.beats = [self.start_on(h, f"beat-{h}", "beat") for h in SCHEDULERS]
        self.wait_api(timeout_s=60)
        for proc in self.workers:
            self.wait_worker(proc, timeout_s=60)

    def kill_host(self, host: str) -> None:
        """Every process of the host dies at once, as when the machine loses power."""
        for proc in self.on.get(host, []):
            proc.signal_group(signal.SIGKILL)
        for proc in self.on.get(host, []):
            proc.wait(5)

    def claims(self, ids: list[str]) -> list[tuple[str, int, str, datetime]]:
        """(job, attempt, claiming host, when) of every claim, oldest first."""
        from tidegate.adapters.sql.tables import job_events

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(job_events.c.job_id, job_events.c.attempt,
                                          job_events.c.detail, job_events.c.at)
                                .where(job_events.c.job_id.in_(ids),
                                       job_events.c.kind == "claimed")
                                .order_by(job_events.c.id))
            return [(r.job_id, r.attempt, str(r.detail.get("worker", "")).split("/")[0], r.at)
                    for r in rows]

    def db_now(self) -> datetime:
        with self.engine.connect() as conn:
            now: datetime = conn.execute(sa.text("SELECT now()")).scalar_one()
        return now.replace(tzinfo=None) if now.tzinfo is None else now


def wait_until(check: Any, timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # the thing is being broken on purpose
            pass
        time.sleep(every_s)
    return False
