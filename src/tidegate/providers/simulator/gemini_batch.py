"""Gemini batch mode with inlined requests: POST models/{model}:batchGenerateContent, GET
batches/{id}, POST batches/{id}:cancel. The batch is an operation-like object whose
``metadata`` carries its state (``BATCH_STATE_*``) and, once it succeeded, the inlined
responses in request order (each with its request's ``metadata``, or an ``error``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator import gemini_api
from tidegate.providers.simulator.batches import ANSWERERS, BatchItem, SimBatch
from tidegate.providers.simulator.engine import SimFailure, SimState
from tidegate.providers.simulator.wire import json_response, read_json

_STATES = {"completed": "BATCH_STATE_SUCCEEDED", "cancelled": "BATCH_STATE_CANCELLED",
           "expired": "BATCH_STATE_EXPIRED"}


def _answer(state: SimState, item: BatchItem) -> Any:
    comp = state.complete(item.call)
    system = gemini_api.parts_text(item.body.get("systemInstruction")
                                   or item.body.get("system_instruction"))
    rid, finish, usage = gemini_api.answer_of(state, item.call, system, comp)
    return gemini_api.reply(item.call.model, rid, comp.text, finish, usage)


ANSWERERS["gemini"] = _answer


def _at(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _render(b: SimBatch) -> dict[str, Any]:
    state = ("BATCH_STATE_RUNNING" if b.status != "ended" else _STATES[b.ended_as])
    meta: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": f"batches/{b.id}", "model": f"models/{b.extra['gemini_model']}",
        "displayName": b.extra.get("display_name") or b.id, "state": state,
        "createTime": _at(b.created_at), "updateTime": _at(b.ended_at or b.created_at),
        **({"endTime": _at(b.ended_at)} if b.ended_at else {}),
        "batchStats": {"requestCount": str(len(b.items))},
    }
    if b.ended_as == "completed":
        responses = []
        for item in b.items:
            row: dict[str, Any] = {"metadata": item.body.get("__metadata__") or {}}
            assert item.outcome is not None
            if item.outcome[0]:
                row["response"] = item.outcome[1]
            else:
                row["error"] = {"code": 500, "message": item.outcome[1], "status": "INTERNAL"}
            responses.append(row)
        meta["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
    return {"name": f"batches/{b.id}", "metadata": meta, "done": b.status == "ended"}


async def create_batch(request: Request, state: SimState, model: str) -> Response:
    body = await read_json(request)
    key = gemini_api.key_of(request)
    batch = (body or {}).get("batch") or {}
    rows = ((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")
    if not isinstance(rows, list):
        return gemini_api.error(SimFailure(400, "bad_request",
                                           "batch.inputConfig.requests.requests is required"))
    items: list[BatchItem] = []
    for n, row in enumerate(rows):
        req = row.get("request") if isinstance(row, dict) else None
        parsed = gemini_api.generate_call(req if isinstance(req, dict) else None, key, model,
                                          state)
        if parsed is None or not isinstance(req, dict):
            return gemini_api.error(SimFailure(400, "bad_request",
                                               f"requests[{n}].request.contents is required"))
        # The request's metadata comes back beside its response; kept with the body.
        items.append(BatchItem(str((row.get("metadata") or {}).get("key", n)),
                               {**req, "__metadata__": row.get("metadata")}, parsed[0]))
    assert state.batches is not None
    try:
        created = state.batches.create("gemini", "sim", key, model, items, gemini_model=model,
                                       display_name=batch.get("displayName"))
    except SimFailure as exc:
        return gemini_api.error(exc, has_key=bool(key))
    return json_response(_render(created))


async def dispatch(request: Request, state: SimState) -> Response:
    """``batches/{id}`` (GET) and ``batches/{id}:cancel`` (POST)."""
    name, _, method = request.path_params["rest"].partition(":")
    assert state.batches is not None
    if request.method == "GET" and not method:
        b = state.batches.get(name, "gemini")
    elif request.method == "POST" and method == "cancel":
        b = state.batches.cancel(name, "gemini")
        if b is not None:
            return json_response({})
    else:
        return gemini_api.error(SimFailure(404, "not_found", f"method {method!r} not found"))
    if b is None:
        return gemini_api.error(SimFailure(404, "not_found", f"batches/{name} not found"))
    return json_response(_render(b))
