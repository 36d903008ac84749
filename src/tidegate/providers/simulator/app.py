"""The simulator's ASGI app: the three vendors' routes (batch APIs too) plus ``/_sim/*`` controls.

``/_sim/config`` (GET, POST a partial JSON object), ``/_sim/stats`` (GET), ``/_sim/reset``
(POST, ``{"config": true}`` also restores the start-up config), ``/_sim/health`` (GET).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tidegate.providers.simulator import (
    anthropic_api,
    anthropic_batch,
    gemini_api,
    gemini_batch,
    openai_api,
    openai_batch,
)
from tidegate.providers.simulator.batches import BatchStore
from tidegate.providers.simulator.config import SimulatorConfig
from tidegate.providers.simulator.engine import SimState
from tidegate.providers.simulator.wire import read_json

log = logging.getLogger("tidegate.simulator")

Handler = Callable[[Request, SimState], Awaitable[Response]]


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    state = SimState(config or SimulatorConfig())
    state.batches = BatchStore(state)

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(request, state)
        return endpoint

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.config.model_dump())

    async def post_config(request: Request) -> Response:
        changes = await read_json(request)
        if changes is None:
            return JSONResponse({"error": {"code": "invalid_json",
                                           "message": "body must be a JSON object"}}, 400)
        try:
            new = state.reconfigure(changes)
        except ValidationError as exc:
            return JSONResponse({"error": {"code": "invalid_config",
                                           "message": str(exc).splitlines()[0],
                                           "details": exc.errors(include_url=False,
                                                                 include_input=False)}}, 422)
        log.info("simulator reconfigured: %s", sorted(changes))
        return JSONResponse(new.model_dump())

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        body = await read_json(request) or {}
        state.reset(config=bool(body.get("config")))
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def gemini_models(request: Request, state: SimState) -> Response:
        model, _, method = request.path_params["rest"].rpartition(":")
        if method == "batchGenerateContent" and model:
            return await gemini_batch.create_batch(request, state, model.removeprefix("models/"))
        return await gemini_api.dispatch(request, state)

    async def v1_batches(request: Request, state: SimState) -> Response:
        # /v1/batches/... is OpenAI's (``batch_sim…[/cancel]``) and Gemini's (``sim…[:cancel]``).
        rest = request.path_params["rest"]
        if not rest.startswith(openai_batch.ID_PREFIX):
            return await gemini_batch.dispatch(request, state)
        batch_id, _, action = rest.partition("/")
        request.path_params["batch_id"] = batch_id
        if request.method == "GET" and not action:
            return await openai_batch.get_batch(request, state)
        if request.method == "POST" and action == "cancel":
            return await openai_batch.cancel_batch(request, state)
        return JSONResponse({"error": {"message": "not found", "type": "invalid_request_error",
                                       "param": None, "code": None}}, 404)

    routes = [
        Route("/v1/chat/completions", bind(openai_api.chat), methods=["POST"]),
        Route("/v1/embeddings", bind(openai_api.embeddings), methods=["POST"]),
        Route("/v1/models", bind(openai_api.models), methods=["GET"]),
        Route("/v1/files", bind(openai_batch.upload_file), methods=["POST"]),
        Route("/v1/files/{file_id}", bind(openai_batch.get_file), methods=["GET"]),
        Route("/v1/files/{file_id}/content", bind(openai_batch.file_content), methods=["GET"]),
        Route("/v1/batches", bind(openai_batch.create_batch), methods=["POST"]),
        Route("/v1/messages", bind(anthropic_api.messages), methods=["POST"]),
        Route("/v1/messages/batches", bind(anthropic_batch.create_batch), methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}", bind(anthropic_batch.get_batch),
              methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", bind(anthropic_batch.cancel_batch),
              methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", bind(anthropic_batch.results),
              methods=["GET"]),
        # google-genai 3.x calls /v1/models/...; older releases and curl examples use /v1beta.
        Route("/v1beta/models/{rest:path}", bind(gemini_models), methods=["POST"]),
        Route("/v1/models/{rest:path}", bind(gemini_models), methods=["POST"]),
        Route("/v1beta/batches/{rest:path}", bind(gemini_batch.dispatch),
              methods=["GET", "POST"]),
        Route("/v1/batches/{rest:path}", bind(v1_batches), methods=["GET", "POST"]),
        Route("/_sim/config", get_config, methods=["GET"]),
        Route("/_sim/config", post_config, methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state  # the server stops hangs through this on shutdown
    return app
