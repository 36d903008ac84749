"""Anthropic's Message Batches: POST /v1/messages/batches, GET /v1/messages/batches/{id},
POST /v1/messages/batches/{id}/cancel, and the results JSONL at the batch's ``results_url``
(``{"custom_id", "result": {"type": "succeeded" | "errored" | "canceled" | "expired"}}``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator import anthropic_api
from tidegate.providers.simulator.batches import ANSWERERS, BatchItem, SimBatch
from tidegate.providers.simulator.engine import SimFailure, SimState
from tidegate.providers.simulator.wire import json_response, read_json


def _answer(state: SimState, item: BatchItem) -> Any:
    comp = state.complete(item.call)
    message, _ = anthropic_api.message_of(state, item.call, item.body, comp)
    return message


ANSWERERS["anthropic"] = _answer


def _at(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _not_found() -> Response:
    return anthropic_api.error(SimFailure(404, "not_found", "batch not found"))


def _render(request: Request, b: SimBatch) -> dict[str, Any]:
    counts = b.counts()
    unanswered = counts["unanswered"]
    ended = b.status == "ended"
    base = str(request.base_url).rstrip("/")
    return {
        "id": b.id, "type": "message_batch",
        "processing_status": {"in_progress": "in_progress", "cancelling": "canceling"}.get(
            b.status, "ended"),
        "request_counts": {"processing": 0 if ended else counts["total"],
                           "succeeded": counts["succeeded"], "errored": counts["errored"],
                           "canceled": unanswered if b.ended_as == "cancelled" else 0,
                           "expired": unanswered if b.ended_as == "expired" else 0},
        "created_at": _at(b.created_at), "expires_at": _at(b.expires_at),
        "ended_at": _at(b.ended_at), "archived_at": None,
        "cancel_initiated_at": _at(b.cancel_at),
        "results_url": f"{base}/v1/messages/batches/{b.id}/results" if ended else None,
    }


async def create_batch(request: Request, state: SimState) -> Response:
    body = await read_json(request)
    key = anthropic_api.key_of(request)
    rows = (body or {}).get("requests")
    if not isinstance(rows, list):
        return anthropic_api.error(SimFailure(400, "bad_request", "requests is required"))
    items: list[BatchItem] = []
    for n, row in enumerate(rows):
        params = row.get("params") if isinstance(row, dict) else None
        call = anthropic_api.message_call(params if isinstance(params, dict) else None, key,
                                          state)
        if call is None or not isinstance(row.get("custom_id"), str):
            return anthropic_api.error(SimFailure(
                400, "bad_request", f"requests.{n}: custom_id and params are required"))
        items.append(BatchItem(row["custom_id"], params, call))
    assert state.batches is not None
    try:
        # Anthropic batches may mix models; the quota scope is the first request's model.
        batch = state.batches.create("anthropic", "msgbatch_sim", key,
                                     items[0].call.model if items else "", items)
    except SimFailure as exc:
        return anthropic_api.error(exc)
    return json_response(_render(request, batch))


async def get_batch(request: Request, state: SimState) -> Response:
    assert state.batches is not None
    b = state.batches.get(request.path_params["batch_id"], "anthropic")
    return _not_found() if b is None else json_response(_render(request, b))


async def cancel_batch(request: Request, state: SimState) -> Response:
    assert state.batches is not None
    b = state.batches.cancel(request.path_params["batch_id"], "anthropic")
    return _not_found() if b is None else json_response(_render(request, b))


async def results(request: Request, state: SimState) -> Response:
    assert state.batches is not None
    b = state.batches.get(request.path_params["batch_id"], "anthropic")
    if b is None:
        return _not_found()
    if b.status != "ended":
        return anthropic_api.error(SimFailure(400, "bad_request",
                                              "the batch has not ended yet"))
    lines = []
    for item in b.items:
        if item.outcome is None:
            result: dict[str, Any] = {"type": "canceled" if b.ended_as == "cancelled"
                                      else "expired"}
        elif item.outcome[0]:
            result = {"type": "succeeded", "message": item.outcome[1]}
        else:
            result = {"type": "errored", "error": {
                "type": "error", "error": {"type": "api_error", "message": item.outcome[1]}}}
        lines.append(json.dumps({"custom_id": item.custom_id, "result": result}))
    return Response("\n".join(lines) + "\n", media_type="application/binary")
