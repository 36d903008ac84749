"""Abort an in-flight provider call from another thread, so that cancelling a job stops its
spending instead of leaving the call to run to its timeout.

An SDK call blocks in a socket read while the model thinks (or while a server hangs). The SDKs'
HTTP clients (httpx, or its httpx2 fork) get a network backend whose streams record, while a
call reads or writes, which socket it is on, in the :class:`CallHandle` of the current call (a
context variable, set by the thread that makes the call). ``handle.abort()`` shuts those sockets
down: the blocked read returns at once, the SDK raises a connection error, and the server sees
the client leave and stops generating. A socket is only ever touched while the call that owns
the handle is using it, so pooled keep-alive connections are never shared by mistake.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_current: ContextVar[CallHandle | None] = ContextVar("tidegate_provider_call", default=None)


def _shutdown(sock: Any) -> None:
    # The plain socket's shutdown, also for an SSLSocket: it sends FIN and wakes a read
    # blocked in another thread (close() would do neither while the read holds the fd).
    with contextlib.suppress(OSError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class CallHandle:
    """One provider call, abortable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, Any] = {}
        self.aborted = False

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            active = list(self._active.values())
        for sock in active:
            _shutdown(sock)

    def _enter(self, sock: Any) -> None:
        with self._lock:
            self._active[id(sock)] = sock
            aborted = self.aborted
        if aborted:  # aborted between two reads: this one must not block either
            _shutdown(sock)

    def _leave(self, sock: Any) -> None:
        with self._lock:
            self._active.pop(id(sock), None)


def run(handle: CallHandle, fn: Callable[[], T]) -> T:
    """Call ``fn`` (in this thread) with ``handle`` as the current call."""
    token = _current.set(handle)
    try:
        return fn()
    finally:
        _current.reset(token)


class _Stream:
    """A network stream that tells the current call which socket it is blocked on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        handle = _current.get()
        sock = self._inner.get_extra_info("socket") if handle is not None else None
        if handle is None or sock is None:
            return fn(*args)
        handle._enter(sock)
        try:
            return fn(*args)
        finally:
            handle._leave(sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._guarded(self._inner.read, max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._guarded(self._inner.write, buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _Stream:
        return _Stream(self._guarded(self._inner.start_tls, ssl_context, server_hostname,
                                     timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(client: Any) -> int:
    """Make the calls of an httpx/httpx2 ``Client`` abortable (its direct transport and its
    proxy mounts). Returns how many connection pools it wrapped: 0 means the HTTP library
    changed shape, and cancellation falls back to abandoning the call."""
    wrapped = 0
    transports = [getattr(client, "_transport", None),
                  *(getattr(client, "_mounts", None) or {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)  # httpx's HTTPTransport -> httpcore pool
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            continue
        if not isinstance(backend, _Backend):
            pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
        wrapped += 1
    return wrapped
