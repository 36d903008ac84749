"""Tidegate across hosts: a services host (PostgreSQL, Redis, RabbitMQ, the provider simulator
with a quota), an API host, two worker hosts and two scheduler hosts, each a network namespace
on one bridge. Under a steady load of reports:

- both worker hosts draw from one provider quota: the simulator never refuses a call;
- a worker host is cut off the network mid-run and later comes back: its jobs are taken over
  elsewhere within the lease, it works again once back, and every job ends exactly once;
- the leading scheduler's host dies: the other scheduler takes over;
- the broker (RabbitMQ, or the broker Redis) restarts: nothing accepted is lost.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import Ledger, ProcSet, record_result, wait_for

from .fleet import LEADS, SCHEDULERS, Fleet, Services, wait_until
from .netns import Network

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

JOBS = 24
SUBMIT_EVERY_S = 1.0
RPM = 40  # per model, in the simulator and in Tidegate's lane limits alike
LANES = ("openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest", "gemini:gemini-2.0-flash")
CUT_S = 12.0  # longer than a broker heartbeat's detection (2 x TIDEGATE_BROKER_HEARTBEAT_S)
SETTINGS = {
    "TIDEGATE_LEASE_S": "3",
    "TIDEGATE_HEARTBEAT_S": "0.5",
    "TIDEGATE_SWEEP_INTERVAL_S": "1",
    "TIDEGATE_BROKER_HEARTBEAT_S": "4",
    # Below the lease: a cut host's open transaction (its COMMIT lost) must not hold the rows
    # the sweep takes back for longer than the lease itself.
    "TIDEGATE_DATABASE_IDLE_IN_TRANSACTION_S": "2",
    # The safety net for a message the broker handed to a connection that was dead by then.
    "TIDEGATE_REDISPATCH_AFTER_S": "30",
    "TIDEGATE_JOB_TIME_LIMIT_S": "60",
}
SIM = ["--rpm", str(RPM), "--tpm", "0", "--latency-min-ms", "20", "--latency-max-ms", "60",
       "--per-token-ms", "0", "--output-tokens-min", "20", "--output-tokens-max", "40"]


def llm_config(path: Path) -> Path:
    lines = [f'[lanes."{lane}"]\nrpm = {RPM}\n' for lane in LANES]
    # Every call stays on its section's lane: the quota of each lane is the one measured.
    lines.append("[jobs.startup_report]\nfallbacks = []\n")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def services(network: Network, procs: ProcSet, tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[Services]:
    broker = request.param
    svc = Services(network, procs, tmp_path, broker)
    try:
        with network.inside("client"):
            yield svc.start(SIM)
    finally:
        procs.close()
        svc.close()


@pytest.mark.parametrize("services", ["redis", "amqp"], indirect=True)
def test_fleet_survives_a_cut_host_a_dead_scheduler_and_a_broker_restart(
        request: pytest.FixtureRequest, network: Network, procs: ProcSet,
        services: Services, tmp_path: Path) -> None:
    with network.inside("client"):
        run(request, network, services, tmp_path)


def run(request: pytest.FixtureRequest, net: Network, services: Services, tmp: Path) -> None:
    fleet = Fleet(net, services.procs, tmp, services,
                  {**SETTINGS, "TIDEGATE_LLM_CONFIG": str(llm_config(tmp / "llm.toml"))})
    request.addfinalizer(fleet.close)
    fleet.start_fleet(concurrency=12)
    leader = wait_for(lambda: next((h for h, b in zip(SCHEDULERS, fleet.beats, strict=True)
                                    if LEADS in b.text()), None), 30, "a leading scheduler")
    ledger = Ledger(fleet)
    figures: dict[str, object] = {"broker": services.broker, "jobs": JOBS}

    def submit() -> None:
        with fleet.client(timeout_s=30) as http:
            for i in range(JOBS):
                ledger.submit(http, "startup_report", {"startup": f"Startup {i}"})
                time.sleep(SUBMIT_EVERY_S)

    submitter = threading.Thread(target=submit, daemon=True)
    t0 = time.monotonic()
    submitter.start()

    # 1. Cut a worker host while it runs jobs; its jobs must be taken over within the lease.
    wait_for(lambda: sum(1 for r in fleet.rows(ledger.accepted).values()
                         if r["status"] == "running"
                         and str(r["lease_owner"] or "").startswith("w1/")) >= 1,
             40, "jobs running on w1")
    cut_at = fleet.db_now()
    net.cut("w1")
    cut_mono = time.monotonic()
    on_cut = [j for j, r in fleet.rows(ledger.accepted).items()
              if r["status"] == "running" and str(r["lease_owner"] or "").startswith("w1/")]

    def taken_back() -> bool:  # by the scheduler, from the cut host: no longer its to run
        return not any(r["status"] == "running" and str(r["lease_owner"] or "").startswith("w1/")
                       for r in fleet.rows(on_cut).values())

    def resumed() -> bool:  # claimed by the other host (or finished there)
        later = {j for j, _a, host, at in fleet.claims(on_cut) if host != "w1" and at > cut_at}
        return set(on_cut) <= later

    assert wait_until(taken_back, 30), "the cut host's jobs were not taken back"
    figures["cut_jobs"] = len(on_cut)
    figures["taken_back_s"] = round(time.monotonic() - cut_mono, 2)
    resumed_s = None
    while time.monotonic() - cut_mono < CUT_S:
        if resumed_s is None and wait_until(resumed, 0.1):
            resumed_s = time.monotonic() - cut_mono
        time.sleep(0.2)
    net.restore("w1")
    restored_at = fleet.db_now()
    figures["cut_s"] = round(time.monotonic() - cut_mono, 2)
    if resumed_s is None:
        assert wait_until(resumed, 40), "the cut host's jobs did not resume elsewhere"
        resumed_s = time.monotonic() - cut_mono
    figures["resumed_elsewhere_s"] = round(resumed_s, 2)

    # 2. Kill the leading scheduler's host; the other must lead.
    standby = fleet.beats[1 - SCHEDULERS.index(leader)]
    fleet.kill_host(leader)
    killed = time.monotonic()
    wait_for(lambda: LEADS in standby.text(), 40, "the standby scheduler took over")
    figures["scheduler_takeover_s"] = round(time.monotonic() - killed, 2)

    # 3. Restart the broker while jobs are still queued and running.
    submitter.join(60)
    assert not submitter.is_alive()
    assert len(ledger.accepted) == JOBS, f"refused: {dict(ledger.refused)}"
    restart = time.monotonic()
    services.restart_broker()
    figures["broker_restart_s"] = round(time.monotonic() - restart, 2)

    recovery = ledger.wait_terminal(150)
    verdict = ledger.verdict(recovery)
    figures.update(verdict.summary())
    figures["makespan_s"] = round(time.monotonic() - t0, 1)
    claims = fleet.claims(list(ledger.accepted))
    figures["claims_by_host"] = {h: sum(1 for c in claims if c[2] == h) for h in ("w1", "w2")}
    figures["w1_claims_after_restore"] = sum(1 for _j, _a, h, at in claims
                                            if h == "w1" and at > restored_at)
    events = fleet.events(ledger.accepted)
    figures["requeued"] = sum(k == "requeued" for ev in events.values() for k, _ in ev)
    # Jobs the sweep sent again because their message was gone (the safety net, not the
    # recovery path: see the note on a Redis broker restart and delayed messages).
    figures["redispatched"] = sum(int(n) for b in fleet.beats
                                  for n in re.findall(r"redispatched=(\d+)", b.text()))
    stats = services.sim_stats()
    by_model = stats["by_model"]
    figures["sim_calls"] = {m: by_model.get(m, {}).get("requests", 0) for m in LANES}
    figures["sim_429"] = stats["total"]["rate_limited"]
    figures["w1_reconnected"] = "Connection to broker lost" in fleet.workers[0].text()
    for key, value in figures.items():
        request.node.user_properties.append((f"multihost_{key}", json.dumps(value)))
    print(f"\nMULTIHOST {json.dumps(figures)}")
    # Also a row of the fault suite's summary table (and its fault_results.jsonl).
    record_result(request, "multihost fleet", services.broker, verdict,
                  **{k: v for k, v in figures.items() if k not in verdict.summary()
                     and k != "broker"})

    assert not verdict.lost, f"lost jobs: {verdict.lost}"
    assert not verdict.duplicates, f"jobs that ended more than once: {verdict.duplicates}"
    assert not verdict.regressions, f"status regressions: {verdict.regressions}"
    assert verdict.statuses == {"succeeded": JOBS}, verdict.statuses
    # One quota, shared: both hosts ran calls, the busiest lane needed more than one bucket,
    # and the simulator refused at most one call a lane (the pacing runs within a quarter
    # second of the provider's bucket; a 429 pauses the lane for every host and fails
    # nothing).
    assert all(figures["claims_by_host"].values()), figures["claims_by_host"]  # type: ignore[attr-defined]
    assert max(figures["sim_calls"].values()) > RPM  # type: ignore[attr-defined]
    assert all(by_model.get(m, {}).get("rate_limited", 0) <= 1 for m in LANES), by_model
    # Back on the network, the cut host works again (its broker connection recovered).
    assert figures["w1_claims_after_restore"], "w1 took no job after it came back"
    # Taken back within the lease (3 s) plus a sweep period (1 s), with room for a busy machine.
    assert float(figures["taken_back_s"]) <= 3 + 1 + 4  # type: ignore[arg-type]
