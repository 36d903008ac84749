"""`tidegate worker` with the flags Celery users pass, seen through Celery's own command line
(`celery -A tidegate.worker.celery inspect ...`) and through Flower, on a private Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fault.harness import ProcSet, RedisServer, wait_for
from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.config import Settings
from tidegate.core.statuses import Status
from tidegate.embedded import free_port
from tidegate.wiring import build_container

CELERY = str(Path(sys.executable).with_name("celery"))


def fleet_env(tmp_path: Path, redis_url: str, **more: str) -> dict[str, str]:
    db = tmp_path / "jobs.db"
    if not db.exists():
        upgrade(make_engine(f"sqlite:///{db}"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TIDEGATE_", "FLOWER_"))}
    return {**clean, "TIDEGATE_REDIS_URL": redis_url, "TIDEGATE_DATABASE_URL": f"sqlite:///{db}",
            "TIDEGATE_DATA_DIR": str(tmp_path), "TIDEGATE_SIMULATOR": "off", **more}


def run(argv: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)


def inspect(what: str, env: dict[str, str]) -> dict[str, object]:
    res = run([CELERY, "-A", "tidegate.worker.celery", "inspect", what, "--json",
               "--timeout", "10"], env)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_worker_flags_reach_celery_and_celery_tools_see_the_jobs(
        tmp_path: Path, procs: ProcSet) -> None:
    redis = RedisServer(procs, tmp_path, persist=False).start()
    env = fleet_env(tmp_path, redis.url)
    worker = procs.start("worker", [sys.executable, "-m", "tidegate", "worker", "--autoscale",
                                    "3,1", "--max-tasks-per-child", "2",
                                    "--max-memory-per-child", "512000",
                                    "--prefetch-multiplier", "2"], env)
    # the container health check: non-zero until the worker stamped itself alive
    wait_for(lambda: run([sys.executable, "-m", "tidegate", "worker", "--check"], env,
                         ).returncode == 0, 60, "worker --check")
    pong = wait_for(lambda: inspect("ping", env), 30, "celery inspect ping")
    (node,) = pong
    assert pong[node] == {"ok": "pong"}
    stats = inspect("stats", env)[node]
    scaler = stats["autoscaler"]
    assert (scaler["max"], scaler["min"], scaler["current"]) == (3, 1, 1)  # type: ignore[index]
    assert stats["pool"]["max-tasks-per-child"] == 2  # type: ignore[index]
    assert stats["prefetch_count"] == 3 * 2  # (max processes x --prefetch-multiplier)
    first_children = set(stats["pool"]["processes"])  # type: ignore[index]

    flower_port = free_port()
    flower_env = {**env, "TIDEGATE_FLOWER_BASIC_AUTH": "ops:s3cret-pw"}
    procs.start("flower", [sys.executable, "-m", "tidegate", "flower", "--port",
                           str(flower_port)], flower_env)
    base = f"http://127.0.0.1:{flower_port}"
    wait_for(lambda: httpx.get(f"{base}/healthcheck").status_code == 200, 60, "flower up")
    time.sleep(2)  # Flower subscribes to the event stream after it listens

    # `celery events` against the deployment: the event stream Flower reads, dumped
    events = procs.start("events", [CELERY, "-A", "tidegate.worker.celery", "events",
                                    "--dump"], env)
    wait_for(lambda: "heartbeat" in events.text(), 60, "celery events receiving")
    settings = Settings(_env_file=None, redis_url=redis.url,  # type: ignore[call-arg]
                        database_url=env["TIDEGATE_DATABASE_URL"], data_dir=tmp_path)
    container = build_container(settings)
    jobs = [container.service.submit(tenant=f"tenant{i % 2}", type="echo",
                                     input={"sleep_s": 3, "steps": 3})[0] for i in range(6)]
    active = wait_for(lambda: [t for t in inspect("active", env)[node]  # type: ignore[attr-defined]
                               ] or None, 60, "a job active")
    # (the message itself carries the job id only; Flower below shows type and tenant)
    assert active[0]["args"][0] in {j.id for j in jobs}
    # under load the pool grows to its maximum
    wait_for(lambda: inspect("stats", env)[node]["autoscaler"]["current"] == 3,  # type: ignore[index]
             60, "autoscaled to 3")
    wait_for(lambda: all(container.store.get(j.id).status.terminal for j in jobs), 90,
             "jobs finished")
    assert all(container.store.get(j.id).status is Status.SUCCEEDED for j in jobs)
    # --max-tasks-per-child 2: six jobs later no child of the first ones is left
    later = set(inspect("stats", env)[node]["pool"]["processes"])  # type: ignore[index]
    assert later and not later & first_children, (first_children, later)

    received = [line for line in events.text().splitlines() if "task received" in line]
    assert any(jobs[0].id in line and "'tenant': 'tenant0'" in line for line in received), \
        [line for line in events.text().splitlines() if "heartbeat" not in line][:20]
    events.stop()

    # Flower asks for the password and shows each task as its job's type and tenant
    assert httpx.get(f"{base}/api/tasks").status_code == 401
    assert httpx.get(f"{base}/", auth=("ops", "wrong")).status_code == 401
    assert httpx.get(f"{base}/", auth=("ops", "s3cret-pw")).status_code == 200
    tasks = wait_for(lambda: httpx.get(f"{base}/api/tasks", auth=("ops", "s3cret-pw")).json()
                     or None, 20, "flower saw the tasks")
    shown = {(t["args"], t["kwargs"]) for t in tasks.values()}
    assert (repr([jobs[0].id]), repr({"job_type": "echo", "tenant": "tenant0"})) in shown
    assert (repr([jobs[1].id]), repr({"job_type": "echo", "tenant": "tenant1"})) in shown
    container.close()
    assert worker.alive()


def test_prefork_flags_beside_the_threads_pool_are_refused(tmp_path: Path) -> None:
    env = fleet_env(tmp_path, "redis://127.0.0.1:1")
    res = run([sys.executable, "-m", "tidegate", "worker", "--pool", "threads",
               "--autoscale", "4,1"], env)
    assert res.returncode != 0 and "prefork" in res.stderr, res.stderr
    res = run([sys.executable, "-m", "tidegate", "worker", "--autoscale", "1,4"], env)
    assert res.returncode != 0 and "MIN <= MAX" in " ".join(res.stderr.split()), res.stderr


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "flower.internal"])
def test_flower_beyond_loopback_needs_a_password(tmp_path: Path, address: str) -> None:
    env = fleet_env(tmp_path, "redis://127.0.0.1:1")
    res = run([sys.executable, "-m", "tidegate", "flower", "--address", address], env)
    assert res.returncode != 0 and "TIDEGATE_FLOWER_BASIC_AUTH" in " ".join(res.stderr.split())
    res = run([sys.executable, "-m", "tidegate", "flower", "--address", address],
              {**env, "TIDEGATE_FLOWER_BASIC_AUTH": "ops"})
    assert res.returncode != 0 and "user:password" in res.stderr
