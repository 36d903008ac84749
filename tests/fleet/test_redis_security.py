"""Redis as production runs it, each on a private redis-server: TLS with a client certificate,
an ACL user of limited rights (the `default` user off), and the eviction policy warning."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis

from tests.fault.harness import ProcSet, RedisServer, redis_binary, wait_for
from tidegate.adapters.celery_app import create_celery
from tidegate.adapters.dispatch import CeleryDispatcher
from tidegate.adapters.redis_client import redis_client
from tidegate.adapters.redis_policy import warn_if_evicting
from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.config import Settings
from tidegate.core.errors import Unavailable
from tidegate.core.statuses import Status
from tidegate.embedded import free_port
from tidegate.wiring import build_container

from ..integration.helpers import running_worker
from .certs import issue, make_ca
from .test_worker_cli import fleet_env

# What Tidegate needs of Redis, and no more: no admin or dangerous commands (FLUSHALL, CONFIG,
# KEYS, DEBUG, ...), INFO for the eviction check. `docs/deploy.md` gives the same line.
ACL_RULES = "~* &* +@all -@dangerous +info"


def settings_for(tmp_path: Path, **kw: object) -> Settings:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    if not (tmp_path / "jobs.db").exists():
        upgrade(make_engine(url))
    return Settings(_env_file=None, data_dir=tmp_path, database_url=url,  # type: ignore[call-arg]
                    **kw)


def run_echo_jobs(settings: Settings, n: int = 3) -> None:
    container = build_container(settings)
    try:
        with running_worker(settings, concurrency=2):
            jobs = [container.service.submit(tenant="acme", type="echo",
                                             input={"text": f"t{i}", "sleep_s": 0.2})[0]
                    for i in range(n)]
            wait_for(lambda: all(container.store.get(j.id).status.terminal for j in jobs), 60,
                     "jobs finished")
        for job in jobs:
            got = container.store.get(job.id)
            assert got.status is Status.SUCCEEDED, got.error
    finally:
        container.close()


def test_tls_with_a_client_certificate(tmp_path: Path, procs: ProcSet) -> None:
    ca = make_ca(tmp_path)
    server_cert, server_key = issue(tmp_path, ca, "redis-server")
    client_cert, client_key = issue(tmp_path, ca, "tidegate")
    port = free_port()
    procs.start("redis-tls", [
        redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key),
        "--tls-ca-cert-file", str(ca[0]), "--tls-auth-clients", "yes", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path)], {})
    settings = settings_for(tmp_path, redis_url=f"rediss://127.0.0.1:{port}",
                            tls_ca_file=ca[0], tls_cert_file=client_cert,
                            tls_key_file=client_key)
    state = redis_client(settings.state_redis(), socket_timeout=3, socket_connect_timeout=3)
    wait_for(state.ping, 15, "TLS redis up")
    state.close()
    # the broker (kombu, through Tidegate's transport) and the shared state, both over TLS
    run_echo_jobs(settings)
    assert not warn_if_evicting(settings)

    no_client_cert = settings.model_copy(update={"tls_cert_file": None, "tls_key_file": None})
    other_ca = settings.model_copy(update={"tls_ca_file": make_ca(tmp_path, "other-ca")[0]})
    for refused in (no_client_cert, other_ca):
        client = redis_client(refused.state_redis(), socket_timeout=3, socket_connect_timeout=3)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()
        with pytest.raises(Unavailable):
            CeleryDispatcher(create_celery(refused)).ping()


def test_an_acl_user_with_limited_rights(tmp_path: Path, procs: ProcSet) -> None:
    password = "pw with spaces/and@signs"
    server = RedisServer(procs, tmp_path, persist=False, auth=("tidegate", password), extra=[
        "--user", "default", "off", "--user", "tidegate", "on", f">{password}",
        *ACL_RULES.split()]).start()
    # credentials as settings (from a secret), the URL without them
    settings = settings_for(tmp_path, redis_url=server.url, redis_username="tidegate",
                            redis_password=password)
    run_echo_jobs(settings)
    client = redis_client(settings.state_redis(), socket_timeout=3, socket_connect_timeout=3)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    client.close()
    anonymous = redis.Redis.from_url(server.url)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()


def test_an_evicting_redis_is_warned_about_at_start(tmp_path: Path, procs: ProcSet) -> None:
    evicting = RedisServer(procs, tmp_path, persist=False, extra=[
        "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]).start()
    env = fleet_env(tmp_path, evicting.url)
    beat = procs.start("beat", [sys.executable, "-m", "tidegate", "beat"], env)
    wait_for(lambda: "maxmemory-policy allkeys-lru" in beat.text(), 30, "the warning")
    line = next(x for x in beat.text().splitlines() if "allkeys-lru" in x)
    assert "WARNING" in line and "noeviction" in line and "shared state" in line
    beat.stop()

    fine = RedisServer(procs, tmp_path / "fine", persist=True).start()
    assert warn_if_evicting(settings_for(tmp_path, redis_url=fine.url)) == []
