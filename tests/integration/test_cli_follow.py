"""`tidegate status ID --wait` follows the event stream, and resumes it by itself when the
connection drops mid-job: it reports the job's end and nothing is lost."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.keys import create_key

from .helpers import running_worker, settings_for
from .live_api import live_api


class DroppingProxy:
    """Forwards TCP to ``upstream``; the first connection that carries an event stream is cut
    after ``cut_after`` of its events reached the client."""

    def __init__(self, upstream: int, cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        seen = 0
        streaming = False
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                streaming = streaming or (downstream and b"text/event-stream" in data)
                if streaming:
                    seen += data.count(b"\nid: ")
                    if self.cuts == 0 and seen > self.cut_after:
                        self.cuts += 1
                        break
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[tuple[dict[str, str], httpx.Client,
                                                             DroppingProxy]]:
    settings = settings_for(tmp_path, redis_url=redis_url, stream_retry_ms=200)
    engine = make_engine(settings.database)
    upgrade(engine)
    key, _ = create_key(SqlJobStore(engine), tenant="acme", secret=settings.secret_key)
    engine.dispose()
    with live_api(settings) as url, running_worker(settings), \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        proxy = DroppingProxy(int(url.rsplit(":", 1)[1]), cut_after=3)
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        cli_env.update(TIDEGATE_URL=f"http://127.0.0.1:{proxy.port}", TIDEGATE_API_KEY=key,
                       TIDEGATE_DATA_DIR=str(tmp_path), COLUMNS="120")
        yield cli_env, client, proxy
        proxy.close()


def test_status_wait_follows_the_stream_through_a_dropped_connection(env) -> None:
    cli_env, client, proxy = env
    job_id = client.post("/v1/jobs", json={"type": "echo", "input": {
        "text": "followed", "sleep_s": 3, "steps": 10}}).json()["job_id"]
    done = subprocess.run([sys.executable, "-m", "tidegate", "status", job_id, "--wait"],
                          env=cli_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert proxy.cuts == 1, "the connection was never dropped"
    assert f"job {job_id} succeeded" in done.stdout and "followed" in done.stdout
    assert "100%" in done.stdout
