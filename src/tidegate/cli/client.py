"""Commands that use a running Tidegate over HTTP: submit, status, jobs, cancel, retry, queues."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from .common import console, fail, settings_or_exit

TERMINAL = {"succeeded", "failed", "cancelled"}


class Api:
    """A small client for the HTTP API; every error becomes a clear message and exit 1."""

    def __init__(self) -> None:
        settings = settings_or_exit()
        key = settings.api_key
        if key is None and settings.key_file.exists():
            key = settings.key_file.read_text().strip()
        self.base = settings.api_url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            fail(f"cannot reach Tidegate at {self.base} ({type(exc).__name__}); is "
                 "`tidegate up` running? Set TIDEGATE_URL to point elsewhere.")
        self.check(resp)
        return None if resp.status_code == 204 else resp.json()

    def check(self, resp: httpx.Response) -> None:
        """An error answer as a clear message (exit 1)."""
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                fail(f"{err['message']} ({resp.status_code} {err['code']})")
            except (ValueError, KeyError, TypeError):
                fail(f"HTTP {resp.status_code}: {resp.text[:300]}")


def register(app: typer.Typer) -> None:
    for fn in (submit, status, jobs, cancel, retry, queues, limits):
        app.command(rich_help_panel="Use")(fn)
    from .webhooks import webhooks_app

    app.add_typer(webhooks_app, name="webhooks", rich_help_panel="Use")


def _print_result(job: dict[str, Any]) -> None:
    state = job["status"]
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(state, "white")
    console.print(f"job [bold]{job['job_id']}[/] [{colour}]{state}[/] after "
                  f"{job['attempts']} attempt(s)")
    if job.get("error"):
        # Job text comes from handlers and providers: printed as text, never as markup.
        console.print(f"[red]{escape(job['error']['code'])}[/]: "
                      f"{escape(job['error']['message'])}")
    result = job.get("result")
    if isinstance(result, dict) and isinstance(result.get("report"), str):
        console.print(Markdown(result["report"]))
    elif result is not None:
        console.print_json(json.dumps(result))
    usage = job.get("usage") or {}
    if usage.get("input_tokens") or usage.get("output_tokens"):
        cost = usage.get("cost_usd")
        console.print(f"usage: {usage['input_tokens']} in / {usage['output_tokens']} out "
                      f"tokens, " + ("cost unknown (a model has no price)" if cost is None
                                    else f"${cost:.4f}"))


def _wait(api: Api, job_id: str, timeout_s: float | None) -> dict[str, Any]:
    from .follow import follow

    return follow(api, job_id, timeout_s)


def submit(job_type: Annotated[str, typer.Argument(help="e.g. echo, startup_report, chat")],
           input: Annotated[str, typer.Option("--input", "-i", help="the job's input as JSON")]
           = "{}",
           priority: Annotated[str | None, typer.Option(help="high, medium or low")] = None,
           idempotency_key: Annotated[str | None, typer.Option(
               help="the same key returns the same job")] = None,
           wait: Annotated[bool, typer.Option("--wait", "-w", help="show progress until done")]
           = False,
           timeout: Annotated[float | None, typer.Option(help="give up waiting after seconds")]
           = None,
           webhook: Annotated[str | None, typer.Option(
               help="POST the job's end to this URL, signed (its secret is printed)")]
           = None) -> None:
    """Submit a job; with --wait, follow its events with a progress bar, then the result."""
    try:
        payload = json.loads(input)
    except json.JSONDecodeError as exc:
        fail(f"--input is not valid JSON: {exc}")
    body: dict[str, Any] = {"type": job_type, "input": payload}
    if priority:
        body["priority"] = priority
    if webhook:
        body["webhook"] = {"url": webhook}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    api = Api()
    accepted = api.call("POST", "/v1/jobs", json=body, headers=headers)
    if (accepted.get("webhook") or {}).get("secret"):
        console.print(f"webhook signing secret (shown only now): {accepted['webhook']['secret']}")
    if not wait:
        console.print(f"submitted job [bold]{accepted['job_id']}[/] ({accepted['priority']})")
        print(accepted["job_id"])
        return
    job = _wait(api, accepted["job_id"], timeout)
    _print_result(job)
    if job["status"] != "succeeded":
        raise SystemExit(1)


def status(job_id: str,
           wait: Annotated[bool, typer.Option("--wait", "-w", help="follow until done")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="print the raw job")] = False
           ) -> None:
    """Show one job: status, progress, result or error."""
    api = Api()
    job = _wait(api, job_id, None) if wait else api.call("GET", f"/v1/jobs/{job_id}")
    if as_json:
        console.print_json(json.dumps(job))
        return
    if job["status"] in TERMINAL:
        _print_result(job)
    else:
        console.print(f"job [bold]{job_id}[/] {job['status']} {job['progress']}% "
                      f"{escape(job.get('message') or '')} (attempt {job['attempts']})")


def jobs(status: Annotated[str | None, typer.Option(help="filter: queued, running, failed...")]
         = None,
         job_type: Annotated[str | None, typer.Option("--type", help="filter by job type")] = None,
         limit: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """List recent jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if job_type:
        params["type"] = job_type
    page = Api().call("GET", "/v1/jobs", params=params)
    table = Table("job_id", "type", "status", "progress", "attempts", "created")
    for j in page["jobs"]:
        table.add_row(j["job_id"], j["type"], j["status"], f"{j['progress']}%",
                      str(j["attempts"]), j["created_at"][:19])
    console.print(table)


def cancel(job_id: str) -> None:
    """Cancel a job: a queued job never starts, a running one stops at its next checkpoint."""
    job = Api().call("DELETE", f"/v1/jobs/{job_id}")
    what = "cancelled" if job["status"] == "cancelled" else "cancellation requested"
    console.print(f"job [bold]{job_id}[/]: {what}")


def retry(job_id: Annotated[str | None, typer.Argument(help="a failed job")] = None,
          all_failed: Annotated[bool, typer.Option(help="replay every failed job")] = False,
          job_type: Annotated[str | None, typer.Option("--type", help="with --all-failed")]
          = None) -> None:
    """Replay failed (dead-lettered) jobs."""
    api = Api()
    if job_id and not all_failed:
        job = api.call("POST", f"/v1/jobs/{job_id}/retry")
        console.print(f"job [bold]{job['job_id']}[/] queued again")
        return
    if not all_failed:
        fail("give a job id, or --all-failed [--type T]")
    params: dict[str, Any] = {"status": "failed", "limit": 500}
    if job_type:
        params["type"] = job_type
    # Collect first, then replay each once: a replayed job that fails again at once must not
    # be picked up a second time by this same command.
    ids: list[str] = []
    while True:
        page = api.call("GET", "/v1/jobs", params=params)
        ids += [j["job_id"] for j in page["jobs"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    count = 0
    for failed_id in ids:
        api.call("POST", f"/v1/jobs/{failed_id}/retry")
        count += 1
    console.print(f"{count} failed job(s) queued again")


def queues() -> None:
    """Show queue depth per priority and the workers."""
    report = Api().call("GET", "/v1/queues")
    table = Table("queue", "ready", "unacked", title=f"broker {report['broker']}")
    for q in report["queues"]:
        table.add_row(q["name"], str(q["ready"]), str(q["unacked"]))
    console.print(table)
    workers = Table("worker", "active", "reserved", "queues")
    for w in report["workers"]:
        workers.add_row(w["name"], str(w["active"]), str(w["reserved"]), ",".join(w["queues"]))
    console.print(workers if report["workers"] else "[yellow]no workers are running[/]")
    console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in report["jobs_by_status"].items()))


def _fmt(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def limits() -> None:
    """Show each provider lane: limits (configured or learned), last minute's use, in-flight
    calls, waiting jobs and any 429 pause."""
    report = Api().call("GET", "/v1/limits")
    table = Table("lane", "rpm", "tpm (in/out/total)", "conc.", "used 1m (req/in/out)",
                  "in flight", "waiting h/m/l", "rate", "paused")
    for lane in report["lanes"]:
        lim, use, wait = lane["limits"], lane["usage_1m"], lane["waiting"]
        src = "learned" if "learned" in lane["sources"].values() else ""
        table.add_row(
            lane["lane"], _fmt(lim["rpm"]),
            f"{_fmt(lim['input_tpm'])}/{_fmt(lim['output_tpm'])}/{_fmt(lim['tpm'])} {src}",
            _fmt(lim["concurrency"]),
            f"{use['requests']}/{use['input_tokens']:,}/{use['output_tokens']:,}",
            str(lane["in_flight"]), f"{wait['high']}/{wait['medium']}/{wait['low']}",
            f"{lane['rate_factor']:.2f}",
            f"{lane['paused_for_s']:.1f}s" if lane["paused_for_s"] else "")
    console.print(table if report["lanes"] else "no lanes used yet")
