"""The one place where errors become HTTP responses: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..core import errors as E
from . import openai_errors

log = logging.getLogger(__name__)

_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")

STATUS_FOR: list[tuple[type[E.TidegateError], int]] = [
    (E.NotFound, 404),
    (E.InvalidInput, 422),
    (E.AlreadyTerminal, 409),
    (E.Conflict, 409),
    (E.Unauthorized, 401),
    (E.Forbidden, 403),
    (E.TooManyRequests, 429),
    (E.Unavailable, 503),
    (E.ConfigurationError, 500),
]


def error_body(code: str, message: str, **details: Any) -> dict[str, dict[str, Any]]:
    return {"error": {"code": code, "message": message, **details}}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None, **details: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **details), status_code=status,
                        headers=headers)


def status_for(exc: E.TidegateError) -> int:
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 400


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's 405 names only the first
    route that matched the path, though several (GET and DELETE /v1/jobs/{id}) may share it.
    Asked of the routes themselves (each method in turn), whatever routers they sit in."""
    routes = request.app.router.routes
    allowed = [m for m in _METHODS if any(
        route.matches({**request.scope, "method": m})[0] is Match.FULL for route in routes)]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    @app.exception_handler(openai_errors.OpenAIError)
    async def _openai(_: Request, exc: openai_errors.OpenAIError) -> JSONResponse:
        return openai_errors.error_response(exc)

    @app.exception_handler(E.TidegateError)
    async def _tidegate(request: Request, exc: E.TidegateError) -> JSONResponse:
        status = status_for(exc)
        if isinstance(exc, E.ConfigurationError):  # names files and hosts: for the log only
            log.error("configuration error answering a request: %s", exc.message)
            return error_response(500, exc.code, "the server is misconfigured; see its log")
        if request.url.path in openai_errors.PATHS:  # the SDKs expect OpenAI's shape
            return openai_errors.error_response(openai_errors.from_tidegate(
                status, exc, E.shorten(exc.message, 1000, quote=False)))
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        details: dict[str, Any] = {}
        if isinstance(exc, E.TooManyRequests | E.DeadlineUnmeetable):
            details = exc.details
        if isinstance(exc, E.TooManyRequests) and exc.retry_after_s is not None:
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return error_response(status, exc.code, E.shorten(exc.message, 1000, quote=False),
                              headers, **details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = E.error_location([p for p in first.get("loc", ()) if p != "body"], "body")
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        msg = E.shorten(first["msg"], 200, quote=False)  # keys and messages may quote input
        return error_response(422, "invalid_request", f"{where}: {msg}{more}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                413: "body_too_large"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never a traceback to the client; the log has it.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
