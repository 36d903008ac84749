"""OpenAI's Files and Batch API: POST /v1/files (multipart, purpose "batch"), GET
/v1/files/{id}[/content], POST /v1/batches, GET /v1/batches/{id}, POST
/v1/batches/{id}/cancel. Answers land in an output file (and failures in an error file) of
JSONL lines ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
"""

from __future__ import annotations

import email.policy
import json
import time
from email.parser import BytesParser
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator import openai_api
from tidegate.providers.simulator.batches import ANSWERERS, BatchItem, SimBatch
from tidegate.providers.simulator.engine import SimFailure, SimState
from tidegate.providers.simulator.wire import json_response, read_json

ID_PREFIX = "batch_sim"
_STATUS = {"completed": "completed", "cancelled": "cancelled", "expired": "expired"}


def _answer(state: SimState, item: BatchItem) -> Any:
    comp = state.complete(item.call)
    cid, created, finish, usage = openai_api.chat_completion(state, item.call, item.body, comp)
    return openai_api.completion_body(cid, created, item.call.model, comp, finish, usage)


ANSWERERS["openai"] = _answer


def _files(state: SimState) -> dict[str, dict[str, Any]]:
    assert state.batches is not None
    return state.batches.files


def _file_object(f: dict[str, Any]) -> dict[str, Any]:
    return {"id": f["id"], "object": "file", "bytes": len(f["content"]),
            "created_at": f["created_at"], "filename": f["filename"], "purpose": f["purpose"],
            "status": "processed", "status_details": None}


def _add_file(state: SimState, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
    f = {"id": f"file-sim{state.next_id():06d}", "content": content, "filename": filename,
         "purpose": purpose, "created_at": int(time.time())}
    _files(state)[f["id"]] = f
    return f


def _bad(message: str, status: int = 400) -> Response:
    return openai_api.error(SimFailure(status, "bad_request", message), "")


async def upload_file(request: Request, state: SimState) -> Response:
    if openai_api.key_of(request) is None:
        return openai_api.error(SimFailure(401, "auth", ""), "")
    fields = _form(request.headers.get("content-type", ""), await request.body())
    upload, purpose = fields.get("file"), fields.get("purpose")
    if upload is None or purpose is None:
        return _bad("'file' and 'purpose' are required")
    return json_response(_file_object(_add_file(state, upload[1], upload[0] or "upload",
                                                purpose[1].decode())))


def _form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's fields as {name: (filename, bytes)}, read with the
    standard library's MIME parser (the SDK sends nothing more exotic)."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            out[name] = (part.get_filename(), payload)
    return out


async def get_file(request: Request, state: SimState) -> Response:
    f = _files(state).get(request.path_params["file_id"])
    if f is None:
        return _bad("No such File object", 404)
    return json_response(_file_object(f))


async def file_content(request: Request, state: SimState) -> Response:
    f = _files(state).get(request.path_params["file_id"])
    if f is None:
        return _bad("No such File object", 404)
    return Response(f["content"], media_type="application/octet-stream")


async def create_batch(request: Request, state: SimState) -> Response:
    body = await read_json(request)
    key = openai_api.key_of(request)
    f = _files(state).get(str((body or {}).get("input_file_id")))
    if body is None or f is None:
        return _bad("'input_file_id' must name an uploaded file")
    if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
        return _bad("the simulator batches '/v1/chat/completions' with completion_window '24h'")
    items: list[BatchItem] = []
    for n, line in enumerate(f["content"].decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            call = openai_api.chat_call(row["body"], key, state)
        except (ValueError, KeyError, TypeError):
            call = None
        if call is None:
            return _bad(f"line {n} of the input file is not a chat completion request")
        items.append(BatchItem(str(row.get("custom_id")), row["body"], call))
    models = {i.call.model for i in items}
    if len(models) > 1:
        return _bad("all requests of a batch must use the same model")
    assert state.batches is not None
    try:
        batch = state.batches.create("openai", ID_PREFIX, key, models.pop() if models else "",
                                     items, input_file_id=f["id"],
                                     metadata=body.get("metadata"))
    except SimFailure as exc:
        return openai_api.error(exc, "")
    return json_response(_render(state, batch))


def _render(state: SimState, b: SimBatch) -> dict[str, Any]:
    """The Batch object; an ended batch's output and error files are written once."""
    counts = b.counts()
    ended = int(b.ended_at) if b.ended_at else None
    status = {"in_progress": "in_progress", "cancelling": "cancelling"}.get(
        b.status, _STATUS.get(b.ended_as, "completed"))
    if b.status == "ended" and "output_file_id" not in b.extra:
        _write_results(state, b)
    return {
        "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
        "errors": None, "input_file_id": b.extra["input_file_id"],
        "completion_window": "24h", "status": status,
        "output_file_id": b.extra.get("output_file_id"),
        "error_file_id": b.extra.get("error_file_id"),
        "created_at": int(b.created_at), "in_progress_at": int(b.created_at),
        "expires_at": int(b.expires_at),
        "finalizing_at": ended if b.ended_as == "completed" else None,
        "completed_at": ended if b.ended_as == "completed" else None,
        "failed_at": None,
        "expired_at": ended if b.ended_as == "expired" else None,
        "cancelling_at": int(b.cancel_at) if b.cancel_at else None,
        "cancelled_at": ended if b.ended_as == "cancelled" else None,
        "request_counts": {"total": counts["total"], "completed": counts["succeeded"],
                           "failed": counts["errored"] + counts["unanswered"]},
        "metadata": b.extra.get("metadata"),
    }


def _write_results(state: SimState, b: SimBatch) -> None:
    out: list[str] = []
    err: list[str] = []
    for item in b.items:
        rid = f"batch_req_sim{state.next_id():06d}"
        if item.outcome is not None and item.outcome[0]:
            out.append(json.dumps({"id": rid, "custom_id": item.custom_id, "error": None,
                                   "response": {"status_code": 200,
                                                "request_id": f"req_sim_{rid}",
                                                "body": item.outcome[1]}}))
            continue
        if item.outcome is not None:
            code, message = "server_error", str(item.outcome[1])
        else:
            code = "batch_expired" if b.ended_as == "expired" else "batch_cancelled"
            message = f"This request could not be executed before the batch {b.ended_as}."
        err.append(json.dumps({"id": rid, "custom_id": item.custom_id, "response": None,
                               "error": {"code": code, "message": message}}))
    b.extra["output_file_id"] = (_add_file(state, ("\n".join(out) + "\n").encode(),
                                           f"{b.id}_output.jsonl", "batch_output")["id"]
                                 if out else None)
    b.extra["error_file_id"] = (_add_file(state, ("\n".join(err) + "\n").encode(),
                                          f"{b.id}_error.jsonl", "batch_output")["id"]
                                if err else None)


async def get_batch(request: Request, state: SimState) -> Response:
    assert state.batches is not None
    b = state.batches.get(request.path_params["batch_id"], "openai")
    return _bad("No such Batch", 404) if b is None else json_response(_render(state, b))


async def cancel_batch(request: Request, state: SimState) -> Response:
    assert state.batches is not None
    b = state.batches.cancel(request.path_params["batch_id"], "openai")
    return _bad("No such Batch", 404) if b is None else json_response(_render(state, b))
