"""A FastAPI backend that streams a Tidegate job's progress to its browser over SSE.

The browser asks this app (not Tidegate: the Tidegate key stays on the server) to start a
report, then opens ``EventSource("/reports/<id>/progress")`` and draws a progress bar from the
events, instead of polling ``/status`` every two seconds. The app follows the job's event
stream with ``AsyncClient.events`` (which resumes with ``Last-Event-ID`` if the connection to
Tidegate drops) and relays each event; a browser that reconnects sends its own
``Last-Event-ID`` and gets only what it missed.

    TIDEGATE_URL=http://127.0.0.1:8000 TIDEGATE_API_KEY=tg_... \
        uvicorn examples.fastapi_progress:app --port 5000

then open http://127.0.0.1:5000/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from tidegate.client import AsyncClient, NotFound

# Which events the page shows, and what it draws from each.
SHOWN = {"claimed", "progress", "llm_call", "quota_wait", "retrying", "succeeded", "failed",
         "cancelled"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client for the app: URL and key from TIDEGATE_URL and TIDEGATE_API_KEY.
    async with AsyncClient() as client:
        app.state.tidegate = client
        yield


app = FastAPI(lifespan=lifespan)


class ReportRequest(BaseModel):
    startup: str = Field(min_length=1, max_length=200)


@app.post("/reports", status_code=202)
async def start_report(body: ReportRequest, request: Request) -> dict[str, str]:
    tg: AsyncClient = request.app.state.tidegate
    job = await tg.submit("startup_report", {"startup": body.startup})
    return {"job_id": job.job_id}


@app.get("/reports/{job_id}/progress")
async def progress(job_id: str, request: Request) -> EventSourceResponse:
    tg: AsyncClient = request.app.state.tidegate
    try:
        await tg.get(job_id)  # a 404 now, before the stream starts
    except NotFound:
        raise HTTPException(404, "no such report") from None
    last = request.headers.get("last-event-id")
    after = int(last) if last and last.isdigit() else None

    async def relay() -> AsyncIterator[dict[str, Any]]:
        async for event in tg.events(job_id, after=after):
            if event.kind not in SHOWN:
                continue
            data = {"kind": event.kind, "status": event.status,
                    "percent": event.detail.get("percent"),
                    "message": event.detail.get("message", "")}
            if event.kind == "succeeded":
                job = await tg.get(job_id)
                data["report"] = (job.result or {}).get("report", "")
            # The relayed id is Tidegate's: a reconnecting browser resumes exactly there.
            yield {"id": str(event.id), "event": event.kind, "data": json.dumps(data)}

    return EventSourceResponse(relay())


PAGE = """<!doctype html>
<title>Startup report</title>
<form id="f"><input name="startup" placeholder="Startup" required> <button>Research</button></form>
<progress id="bar" max="100" value="0"></progress> <span id="msg"></span>
<pre id="out"></pre>
<script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const startup = new FormData(e.target).get("startup");
  const r = await fetch("/reports", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({startup})});
  const {job_id} = await r.json();
  const es = new EventSource(`/reports/${job_id}/progress`);
  const show = (ev) => {
    const d = JSON.parse(ev.data);
    if (d.percent != null) document.getElementById("bar").value = d.percent;
    document.getElementById("msg").textContent = d.message || d.status;
    if (d.report) document.getElementById("out").textContent = d.report;
    if (["succeeded", "failed", "cancelled"].includes(ev.type)) es.close();
  };
  for (const kind of %s) es.addEventListener(kind, show);
};
</script>
"""


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE % json.dumps(sorted(SHOWN))
