"""RabbitMQ as production runs it: a vhost and a user of Tidegate's own (not guest, no
management tag), the queues as quorum queues, and a job handed back with a countdown coming
back through RabbitMQ's native delayed delivery."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import ProcSet, RabbitServer
from tests.services import AMQP_URL, need
from tidegate.adapters.celery_app import create_celery
from tidegate.adapters.dispatch import CeleryDispatcher
from tidegate.core.errors import Unavailable
from tidegate.core.models import TenantSettings
from tidegate.core.statuses import Status
from tidegate.embedded import free_port
from tidegate.wiring import build_container

from ..integration.helpers import running_worker, wait_until
from .certs import issue, make_ca
from .test_redis_security import run_echo_jobs, settings_for

CTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"


def ctl(*args: str) -> str:
    return subprocess.run([CTL, *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


@pytest.fixture
def tidegate_vhost() -> Iterator[str]:
    """The lines docs/deploy.md gives, on a vhost and user made for this test."""
    need(AMQP_URL, 5672, "RabbitMQ")
    if not Path(CTL).exists():
        pytest.skip("rabbitmqctl is not here")
    name, password = f"tidegate-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    ctl("add_vhost", name)
    ctl("add_user", name, password)
    ctl("set_permissions", "-p", name, name, ".*", ".*", ".*")
    try:
        yield f"amqp://{name}:{password}@127.0.0.1:5672/{name}"
    finally:
        subprocess.run([CTL, "delete_vhost", name], capture_output=True, timeout=60)
        subprocess.run([CTL, "delete_user", name], capture_output=True, timeout=60)


def test_quorum_queues_with_a_vhost_and_user_of_its_own(tmp_path: Path, redis_url: str,
                                                        tidegate_vhost: str) -> None:
    settings = settings_for(tmp_path, broker_url=tidegate_vhost, redis_url=redis_url,
                            broker_quorum_queues=True)
    container = build_container(settings)
    # capped at one running job: the second is handed back with a countdown (~2 s), which
    # quorum queues can only do through RabbitMQ's native delayed delivery
    container.store.put_tenant(TenantSettings(name="bulk", max_running=1))
    with running_worker(settings, concurrency=2):
        jobs = [container.service.submit(tenant="bulk", type="echo",
                                         input={"sleep_s": 1.0, "steps": 2})[0]
                for _ in range(2)]
        wait_until(lambda: all(container.store.get(j.id).status.terminal for j in jobs),
                   timeout_s=60)
    assert all(container.store.get(j.id).status is Status.SUCCEEDED for j in jobs)
    codes = [e.detail.get("code") for j in jobs for e in container.store.events(j.id)]
    assert "tenant_running_cap" in codes
    vhost = tidegate_vhost.rsplit("/", 1)[1]
    types = dict(line.split("\t") for line in ctl(
        "list_queues", "-p", vhost, "name", "type", "--quiet", "--no-table-headers"
    ).strip().splitlines())
    assert {q: types.get(q) for q in ("high", "medium", "low")} == {
        "high": "quorum", "medium": "quorum", "low": "quorum"}
    assert any(name.startswith("celery_delayed_") for name in types)
    container.close()


def test_amqps_with_a_client_certificate(tmp_path: Path, procs: ProcSet, redis_url: str) -> None:
    """A private RabbitMQ whose TLS listener requires a client certificate: jobs flow over
    amqps:// with the CA and certificate from the settings; without the certificate, or
    against another CA, the broker is unavailable."""
    ca = make_ca(tmp_path)
    server_cert, server_key = issue(tmp_path, ca, "rabbit-server")
    client_cert, client_key = issue(tmp_path, ca, "tidegate")
    rabbit = RabbitServer(procs, tmp_path)
    tls_port = free_port()
    with (rabbit.dir / "rabbitmq.conf").open("a") as conf:
        conf.write(f"listeners.ssl.default = 127.0.0.1:{tls_port}\n"
                   f"ssl_options.cacertfile = {ca[0]}\n"
                   f"ssl_options.certfile = {server_cert}\n"
                   f"ssl_options.keyfile = {server_key}\n"
                   "ssl_options.verify = verify_peer\n"
                   "ssl_options.fail_if_no_peer_cert = true\n")
    rabbit.start(timeout_s=90)
    settings = settings_for(tmp_path, broker_url=f"amqps://guest:guest@127.0.0.1:{tls_port}//",
                            redis_url=redis_url, tls_ca_file=ca[0], tls_cert_file=client_cert,
                            tls_key_file=client_key)
    CeleryDispatcher(create_celery(settings)).ping()
    run_echo_jobs(settings)
    no_client_cert = settings.model_copy(update={"tls_cert_file": None, "tls_key_file": None})
    other_ca = settings.model_copy(update={"tls_ca_file": make_ca(tmp_path, "other-ca")[0]})
    for refused in (no_client_cert, other_ca):
        with pytest.raises(Unavailable):
            CeleryDispatcher(create_celery(refused)).ping()
