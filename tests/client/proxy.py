"""A TCP proxy in front of a real Tidegate that breaks connections on purpose.

Each request for an event stream takes the next behaviour from ``stream_plan``, each other
request the next from ``plan`` (then they pass through):
- ``"pass"``: forward both ways;
- ``"lose_answer"``: forward the request, let Tidegate answer, then close the connection
  without passing the answer on (the request was served; the client saw a reset);
- ``("cut_after", n)``: forward until ``n`` SSE events reached the client, then close;
- ``"refuse_streams"``: answer any request for an event stream with 502, as a proxy that cannot
  stream would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class BreakingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.plan: list[Any] = []
        self.stream_plan: list[Any] = []
        self.requests: list[bytes] = []  # the first bytes of each request head, in order
        self.connections = 0
        self.refuse_streams = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        done = threading.Event()
        current: dict[str, Any] = {"behaviour": "pass"}  # of the request being answered

        def client_to_upstream() -> None:
            try:
                while chunk := client.recv(65536):
                    if chunk[:4] in (b"GET ", b"POST", b"DELE", b"PUT "):
                        stream = b"/events" in chunk.split(b"\r\n")[0]
                        with self._lock:
                            self.requests.append(chunk.split(b"\r\n\r\n")[0])
                            plan = self.stream_plan if stream else self.plan
                            current["behaviour"] = plan.pop(0) if plan else "pass"
                        if self.refuse_streams and stream:
                            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0"
                                           b"\r\nConnection: close\r\n\r\n")
                            break
                    upstream.sendall(chunk)
            except OSError:
                pass
            done.set()

        def upstream_to_client() -> None:
            events = 0
            try:
                while chunk := upstream.recv(65536):
                    behaviour = current["behaviour"]
                    if behaviour == "lose_answer":
                        break  # served, but the answer never reaches the client
                    if isinstance(behaviour, tuple) and behaviour[0] == "cut_after":
                        # Pass on n whole events and the start of the next one, then cut.
                        at = -1
                        while (at := chunk.find(b"event: ", at + 1)) >= 0:
                            events += 1
                            if events > behaviour[1]:
                                client.sendall(chunk[:at + 3])
                                return done.set()
                    client.sendall(chunk)
            except OSError:
                pass
            done.set()

        threading.Thread(target=client_to_upstream, daemon=True).start()
        threading.Thread(target=upstream_to_client, daemon=True).start()
        done.wait()
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
