"""`tidegate demo`: the classic 'send 30 reports at once' script, done properly."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from .client import TERMINAL, Api
from .common import console

STARTUPS = ["TeslaAI", "Quantum Leaf", "Nimbus Health", "Orbit Freight", "Lumen Legal",
            "Kiln Robotics", "Harbor Pay", "Sprout Genomics", "Vector Foods", "Atlas Grid"]


def demo(count: Annotated[int, typer.Option(help="how many reports to submit")] = 30,
         job_type: Annotated[str, typer.Option("--type", help="job type to submit")]
         = "startup_report",
         priority: Annotated[str | None, typer.Option(help="high, medium or low")] = None
         ) -> None:
    """Submit COUNT startup reports at once and watch them finish: a live table of queued,
    running and done jobs and queue depth, then a summary (time, tokens, cost)."""
    api = Api()
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    ids: list[str] = []
    for i in range(count):
        name = f"{STARTUPS[i % len(STARTUPS)]} {i + 1}"
        body: dict[str, Any] = {"type": job_type, "metadata": {"demo": run}}
        body["input"] = {"startup": name} if job_type == "startup_report" else {"text": name}
        if priority:
            body["priority"] = priority
        ids.append(api.call("POST", "/v1/jobs", json=body,
                            headers={"Idempotency-Key": f"demo-{run}-{i}"})["job_id"])
    jobs: dict[str, dict[str, Any]] = {}
    queues: dict[str, Any] = {"queues": []}
    last_queues = 0.0
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            for job_id in ids:
                if jobs.get(job_id, {}).get("status") not in TERMINAL:
                    jobs[job_id] = api.call("GET", f"/v1/jobs/{job_id}")
            if time.monotonic() - last_queues > 2:
                queues = api.call("GET", "/v1/queues")
                last_queues = time.monotonic()
            live.update(_table(jobs, queues, time.monotonic() - started))
            if all(j["status"] in TERMINAL for j in jobs.values()):
                break
            time.sleep(1)
    elapsed = time.monotonic() - started
    states = Counter(j["status"] for j in jobs.values())
    tokens_in = sum(j["usage"]["input_tokens"] for j in jobs.values())
    tokens_out = sum(j["usage"]["output_tokens"] for j in jobs.values())
    costs = [j["usage"].get("cost_usd") for j in jobs.values()]
    cost_text = ("cost unknown (a model has no price)" if None in costs
                 else f"${sum(c for c in costs if c is not None):.4f}")
    console.print(f"\n[bold]{states['succeeded']}[/] succeeded, [bold]{states['failed']}[/] "
                  f"failed, {states['cancelled']} cancelled, in {elapsed:.1f}s; "
                  f"{tokens_in:,} input + {tokens_out:,} output tokens, {cost_text}")
    for job in jobs.values():
        if job["status"] == "failed":
            console.print(f"  [red]{job['job_id']}[/]: {job['error']['code']}: "
                          f"{job['error']['message']}")
    if states["succeeded"] != count:
        raise SystemExit(1)


def _table(jobs: dict[str, dict[str, Any]], queues: dict[str, Any], elapsed: float) -> Table:
    states = Counter(j["status"] for j in jobs.values())
    table = Table(title=f"{len(jobs)} jobs, {elapsed:.0f}s")
    for col in ("queued", "running", "retrying", "succeeded", "failed", "cancelled"):
        table.add_column(col, justify="right")
    table.add_column("queue depth (ready/unacked)")
    depth = ", ".join(f"{q['name']} {q['ready']}/{q['unacked']}" for q in queues["queues"])
    table.add_row(*(str(states[c]) for c in ("queued", "running", "retrying", "succeeded",
                                             "failed", "cancelled")), depth)
    return table
