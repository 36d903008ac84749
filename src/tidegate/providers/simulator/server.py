"""Run the simulator: in the foreground (``serve``) or on a free port in a thread for tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from tidegate.providers.simulator.app import create_app
from tidegate.providers.simulator.config import SimulatorConfig


def serve(host: str = "127.0.0.1", port: int = 8400, config: SimulatorConfig | None = None,
          log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C)."""
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                           timeout_graceful_shutdown=2, access_log=False))
    try:
        server.run()
    finally:
        app.state.sim.stopping.set()


def run_in_thread(config: SimulatorConfig | None = None,
                  host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Start on a free port in a daemon thread; returns ``(base_url, stop)``.

    The socket is bound here, before the thread starts, so the port is ours (no race with other
    tests picking the same free port) and the URL is usable as soon as this returns.
    """
    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"tidegate-sim-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("simulator did not start")

    def stop() -> None:
        app.state.sim.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        with contextlib.suppress(OSError):
            sock.close()

    return f"http://{host}:{port}", stop
