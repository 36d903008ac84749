"""Start and stop `tidegate up` as a subprocess, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tidegate.embedded import free_port


@dataclass
class Up:
    proc: subprocess.Popen[str]
    url: str
    key: str
    env: dict[str, str]
    log: Path
    simulator_url: str

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tidegate", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"},
                            timeout=10)


def start_up(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Up:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    env.update({"TIDEGATE_DATA_DIR": str(tmp_path / "data"), "TIDEGATE_PORT": str(port),
                "TIDEGATE_SIMULATOR_PORT": str(free_port()),
                "TIDEGATE_URL": f"http://127.0.0.1:{port}", "COLUMNS": "120"})
    env.update(extra_env or {})
    log = tmp_path / "up.log"
    proc = subprocess.Popen([sys.executable, "-m", "tidegate", "up"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    key_file = tmp_path / "data" / "api_key"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tidegate up exited early:\n{log.read_text()[-3000:]}")
        if "Tidegate is running" in log.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"tidegate up did not start:\n{log.read_text()[-3000:]}")
    return Up(proc, f"http://127.0.0.1:{port}", key_file.read_text().strip(), env, log,
              f"http://127.0.0.1:{env['TIDEGATE_SIMULATOR_PORT']}")


def stop_up(up: Up) -> int:
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
    try:
        return up.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        up.proc.kill()
        raise


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")
