"""HTTP request counts and latency by route template (pure ASGI, so streams are not held)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..adapters.metrics import http_requests, http_seconds

UNMATCHED = "(unmatched)"  # unknown paths share one label: a scanner cannot grow the series


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Latency to the first byte: a stream's whole life is not the route's latency.
                http_seconds.labels(route=_route(scope), method=scope["method"]).observe(
                    time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            http_requests.labels(route=_route(scope), method=scope["method"],
                                 status=str(status)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
