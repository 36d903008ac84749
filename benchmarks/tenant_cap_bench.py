"""How long one tenant's burst of long jobs delays another tenant's `high` job, without and
with a running cap on the bursting tenant.

A real Celery worker (threads pool, the default 8 slots) in this process, SQLite, and Redis
(TIDEGATE_BENCH_REDIS_URL, default 127.0.0.1:6379/9; the script flushes that database only).
Tenant `bulk` submits 8 `echo` jobs of ``--sleep-s`` each; a moment later tenant `vip` submits
one `high` echo job. Printed: vip's wait from submit to finish, each way, and the ratio.

    .venv/bin/python -m benchmarks.tenant_cap_bench [--sleep-s 20] [--cap 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import redis
from tests.integration.helpers import running_worker, settings_for, wait_until

from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.models import TenantSettings
from tidegate.wiring import build_container


def vip_wait_s(redis_url: str, sleep_s: float, cap: int | None) -> float:
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(Path(tmp), redis_url=redis_url, broker_url=redis_url,
                                worker_concurrency=8)
        container = build_container(settings)
        upgrade(container.engine)
        if cap is not None:
            container.store.put_tenant(TenantSettings(name="bulk", max_running=cap))
        with running_worker(settings, concurrency=8):
            bulk = [container.service.submit(tenant="bulk", type="echo",
                                             input={"sleep_s": sleep_s, "steps": 4})[0]
                    for _ in range(8)]
            wait_until(lambda: container.store.count_running("bulk") >= min(8, cap or 8),
                       timeout_s=60)
            start = time.monotonic()
            vip, _ = container.service.submit(tenant="vip", type="echo", priority="high",
                                              input={"text": "now"})
            wait_until(lambda: container.store.get(vip.id).status.terminal,
                       timeout_s=sleep_s * 4 + 60, every_s=0.05)
            waited = time.monotonic() - start
            for j in bulk:  # the rest need not run out
                if not container.store.get(j.id).status.terminal:
                    container.store.request_cancel(j.id, tenant=None)
        container.close()
    return waited


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sleep-s", type=float, default=20.0)
    p.add_argument("--cap", type=int, default=4)
    args = p.parse_args()
    url = os.environ.get("TIDEGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    without = vip_wait_s(url, args.sleep_s, None)
    with_cap = vip_wait_s(url, args.sleep_s, args.cap)
    print(f"vip high job, 8 x {args.sleep_s:g}s bulk jobs on 8 slots: waited {without:.2f}s "
          f"without a cap, {with_cap:.2f}s with bulk capped at {args.cap} running "
          f"({without / max(with_cap, 1e-3):.0f}x shorter)")


if __name__ == "__main__":
    main()
