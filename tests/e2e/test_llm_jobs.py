"""The LLM job types end to end: `tidegate up` with the provider simulator, all offline."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from .harness import Up, start_up, stop_up, wait_job

# One Tidegate stack for the module (a module fixture): its tests run in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-llm")]

FAST_SIM = {"latency_min_ms": 20, "latency_max_ms": 60, "per_token_ms": 0,
            "output_tokens_min": 40, "output_tokens_max": 80}


def sim(up: Up, path: str, json: dict | None = None) -> dict:
    r = httpx.post(up.simulator_url + path, json=json or {}, timeout=5) if json is not None \
        else httpx.get(up.simulator_url + path, timeout=5)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("llm")
    up = start_up(tmp, {"TIDEGATE_LEASE_S": "4", "TIDEGATE_HEARTBEAT_S": "0.5",
                        "TIDEGATE_SWEEP_INTERVAL_S": "1"})
    try:
        yield up
    finally:
        assert stop_up(up) == 0


def test_every_job_type_succeeds_on_the_simulator(up: Up) -> None:
    sim(up, "/_sim/config", FAST_SIM)
    jobs = {
        "startup_report": {"startup": "TeslaAI", "focus": "battery supply chain"},
        "chat": {"message": "What is a term sheet?", "conversation_id": "conv-1"},
        "analyze_section": {"section": "Market", "content": "We sell to every company."},
        "embeddings": {"texts": ["alpha", "beta", "gamma"]},
    }
    with up.http() as client:
        ids = {t: client.post("/v1/jobs", json={"type": t, "input": i}).json()["job_id"]
               for t, i in jobs.items()}
        legacy = client.post("/generate", json={"startup": "Acme Robotics"}).json()["job_id"]
        done = {t: wait_job(client, job_id, 120) for t, job_id in ids.items()}
        for t, job in done.items():
            assert job["status"] == "succeeded", (t, job["error"])
            assert job["result"]["simulated"] is True, t
            assert job["usage"]["input_tokens"] > 0, t
        report = done["startup_report"]["result"]
        assert report["report"].startswith("# TeslaAI")
        assert set(report["sections"]) == {"market", "product", "team", "competition", "risks",
                                           "verdict", "synthesis"}
        lanes = {s["lane"].split(":")[0] for s in report["sections"].values()}
        assert lanes == {"openai", "anthropic", "gemini"}  # spread across providers
        assert done["startup_report"]["usage"]["cost_usd"] > 0
        assert done["startup_report"]["usage"]["unpriced"] is False
        assert done["startup_report"]["usage"]["late"] == {"input_tokens": 0,
                                                           "output_tokens": 0, "cost_usd": 0.0}
        refused = client.post("/v1/jobs", json={"type": "chat", "input": {
            "message": "hi", "model": "openai:anything-i-like"}})
        assert refused.status_code == 422 and "not allowed" in refused.text
        feedback = done["analyze_section"]["result"]["feedback"]
        assert set(feedback) == {"strengths", "issues", "suggestions"}
        emb = done["embeddings"]["result"]
        assert emb["count"] == 3 and emb["dimensions"] > 0
        assert done["chat"]["result"]["reply"]
        assert wait_job(client, legacy, 120)["status"] == "succeeded"
        state = client.get(f"/status/{legacy}").json()
        assert state["state"] == "SUCCESS" and "report" in state["result"]
        limits = client.get("/v1/limits").json()["lanes"]
        assert {lane["lane"].split(":")[0] for lane in limits} >= {"openai", "anthropic",
                                                                   "gemini"}
    shown = up.cli("limits")
    assert shown.returncode == 0 and "openai" in shown.stdout
    worker_metrics = re.search(r"(http://[\d.]+:\d+/metrics) \(worker\)", up.log.read_text())
    assert worker_metrics, "worker metrics URL not in the banner"
    text = httpx.get(worker_metrics.group(1), timeout=5).text
    assert 'tidegate_provider_calls_total{lane="openai:gpt-4o-mini",outcome="ok"}' in text
    assert 'tidegate_job_outcomes_total{outcome="succeeded",type="startup_report"}' in text
    system = httpx.get(up.url + "/metrics", timeout=5).text
    assert 'tidegate_lane_requests_last_minute{lane="gemini:gemini-2.0-flash"}' in system


def test_report_through_the_cli(up: Up) -> None:
    sim(up, "/_sim/config", FAST_SIM)
    done = up.cli("submit", "startup_report", "--input", '{"startup": "Kiln Robotics"}',
                  "--wait", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Kiln Robotics" in done.stdout and "Summary" in done.stdout


def test_permanent_provider_error_fails_at_once(up: Up) -> None:
    sim(up, "/_sim/config", {**FAST_SIM, "context_window": 50})
    try:
        with up.http() as client:
            job_id = client.post("/v1/jobs", json={"type": "analyze_section", "input": {
                "section": "Risks", "content": "word " * 400}}).json()["job_id"]
            job = wait_job(client, job_id, 60)
    finally:
        sim(up, "/_sim/config", {"context_window": 128000})
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "context_too_long"
    assert "openai" in job["error"]["message"]
    # The dead-letter set replays: the provider's limit is back to normal now.
    with up.http() as client:
        failed = client.get("/v1/jobs", params={"status": "failed"}).json()["jobs"]
        assert job_id in [j["job_id"] for j in failed]
        replay = up.cli("retry", "--all-failed", "--type", "analyze_section")
        assert replay.returncode == 0 and "1 failed job(s) queued again" in replay.stdout
        again = wait_job(client, job_id, 60)
    assert again["status"] == "succeeded" and again["attempts"] == 1


def test_cancel_cuts_off_a_hanging_provider_call(up: Up) -> None:
    sim(up, "/_sim/reset", {})
    sim(up, "/_sim/config", {**FAST_SIM, "hang_rate": 1.0, "hang_s": 120})
    try:
        with up.http() as client:
            job_id = client.post("/v1/jobs", json={"type": "chat", "input": {
                "message": "hello", "model": "fast"}}).json()["job_id"]
            deadline = time.monotonic() + 30
            while sim(up, "/_sim/stats")["total"]["hangs"] < 1:
                assert time.monotonic() < deadline, "the call never reached the simulator"
                time.sleep(0.1)
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
            job = wait_job(client, job_id, 15)  # the heartbeat (0.5 s) carries the cancel
            deadline = time.monotonic() + 5
            while sim(up, "/_sim/stats")["total"]["hangs_disconnected"] < 1:
                assert time.monotonic() < deadline, "the worker left the connection open"
                time.sleep(0.1)
            lane = next(x for x in client.get("/v1/limits").json()["lanes"]
                        if x["lane"] == "openai:gpt-4o-mini")
    finally:
        sim(up, "/_sim/config", {**FAST_SIM, "hang_rate": 0.0})
    assert job["status"] == "cancelled"
    assert lane["in_flight"] == 0  # its reservation was freed, not left to expire


def test_interrupted_report_resumes_without_repeating_sections(up: Up) -> None:
    # Slow calls, so that the worker can be killed half way through.
    sim(up, "/_sim/config", {**FAST_SIM, "latency_min_ms": 700, "latency_max_ms": 800})
    sim(up, "/_sim/reset", {})
    with up.http() as client:
        job_id = client.post("/v1/jobs", json={"type": "startup_report",
                                               "input": {"startup": "Harbor Pay"}}
                             ).json()["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["progress"] >= 3 * 100 // 7:  # three sections checkpointed
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"report did not progress: {job}")
        pids = re.findall(r"tidegate-high-medium-low-(\d+)@", up.log.read_text())
        os.kill(int(pids[-1]), signal.SIGKILL)  # the whole worker, mid-report
        sim(up, "/_sim/config", FAST_SIM)
        job = wait_job(client, job_id, 120)
        history = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/history").json()]
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and "requeued" in history
    calls = sim(up, "/_sim/stats")["total"]["requests"]
    # 7 calls for the report; at most one more: the call in flight when the worker died.
    assert 7 <= calls <= 8, calls
    assert "worker exited" in up.log.read_text()


def test_openai_base_url_sends_openai_calls_to_that_server(tmp_path: Path) -> None:
    """Any OpenAI-compatible server (vLLM, Ollama, LiteLLM...): here a second simulator
    stands in for one. The other providers stay on the bundled simulator."""
    from tidegate.providers.simulator import SimulatorConfig, run_in_thread

    compatible_url, stop_compatible = run_in_thread(SimulatorConfig(
        latency_min_ms=10, latency_max_ms=20, per_token_ms=0))
    llm = tmp_path / "llm.toml"  # the operator names the server's models
    llm.write_text('[models]\nallow = ["openai:my-local-*"]\n')
    up = start_up(tmp_path, {"OPENAI_BASE_URL": f"{compatible_url}/v1",
                             "TIDEGATE_LLM_CONFIG": str(llm)})
    try:
        banner = up.log.read_text()
        assert "SIMULATED for anthropic, gemini" in banner  # openai is not simulated
        with up.http() as client:
            job_id = client.post("/v1/jobs", json={"type": "chat", "input": {
                "message": "hello", "model": "openai:my-local-model"}}).json()["job_id"]
            job = wait_job(client, job_id, 60)
        assert job["status"] == "succeeded", job["error"]
        assert job["result"]["simulated"] is False and job["result"]["lane"] == \
            "openai:my-local-model"
        # A local model has no price: its cost is unknown, not zero.
        assert job["usage"]["cost_usd"] is None and job["usage"]["unpriced"] is True
        assert job["result"]["unpriced"] is True
        seen = httpx.get(compatible_url + "/_sim/stats", timeout=5).json()
        assert seen["total"]["requests"] == 1
        assert httpx.get(up.simulator_url + "/_sim/stats", timeout=5).json()[
            "total"]["requests"] == 0
    finally:
        assert stop_up(up) == 0
        stop_compatible()
