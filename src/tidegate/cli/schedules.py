"""`tidegate schedules list|add|delete`: periodic jobs, over the API (the key's scope applies:
admin for any tenant's, submit for its own)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, fail


def register(app: typer.Typer) -> None:
    schedules = typer.Typer(help="Periodic jobs run by `tidegate beat`: list, add, delete.",
                            no_args_is_help=True)
    schedules.command("list")(schedules_list)
    schedules.command("add")(schedules_add)
    schedules.command("delete")(schedules_delete)
    app.add_typer(schedules, name="schedules", rich_help_panel="Use")


def _when(at: str | None) -> str:
    return "-" if at is None else f"{datetime.fromisoformat(at):%Y-%m-%d %H:%M:%S}"


def schedules_list(tenant: Annotated[str | None, typer.Option(
        help="admin keys: only this tenant's")] = None) -> None:
    """Schedules with their last run, next run and last job."""
    from .client import Api

    rows = Api().call("GET", "/v1/schedules", params={"tenant": tenant} if tenant else None)
    table = Table("tenant", "name", "when", "type", "missed", "last run", "next run",
                  "last job", "source")
    for s in rows:
        when = s["cron"] + (f" ({s['timezone']})" if s["timezone"] != "UTC" else "") \
            if s["cron"] else f"every {s['every_s']}s"
        last_job = s["last_job_id"] or (f"refused: {s['last_error']}" if s["last_error"] else "-")
        table.add_row(*(escape(str(v)) for v in (
            s["tenant"], s["name"], when, s["type"], s["missed"], _when(s["last_run_at"]),
            _when(s["next_run_at"]), last_job, s["source"])))
    console.print(table if rows else "no schedules (`tidegate schedules add`)")


def schedules_add(
        name: Annotated[str, typer.Argument(help="unique within the tenant")],
        job_type: Annotated[str, typer.Option("--type", help="the job type, e.g. echo")],
        cron: Annotated[str | None, typer.Option(help="e.g. '0 2 * * *' (2 AM daily)")] = None,
        every_s: Annotated[int | None, typer.Option(help="instead of --cron: every N s")]
        = None,
        timezone: Annotated[str, typer.Option(help="the cron's IANA time zone")] = "UTC",
        input_json: Annotated[str, typer.Option("--input", help="the job's input, JSON")]
        = "{}",
        priority: Annotated[str | None, typer.Option(help="high, medium or low")] = None,
        missed: Annotated[str, typer.Option(help="once: run the latest missed slot once; "
                                             "skip: drop missed slots")] = "once",
        tenant: Annotated[str | None, typer.Option(help="admin keys: another tenant's")]
        = None) -> None:
    """Add a schedule; a bad cron, time zone, type or input is refused and adds nothing."""
    from .client import Api

    try:
        data = json.loads(input_json)
    except ValueError as exc:
        fail(f"--input is not JSON: {exc}")
    body: dict[str, Any] = {"name": name, "type": job_type, "input": data, "cron": cron,
                            "every_s": every_s, "timezone": timezone, "priority": priority,
                            "missed": missed, "tenant": tenant}
    s = Api().call("POST", "/v1/schedules", json={k: v for k, v in body.items()
                                                  if v is not None})
    console.print(f"schedule {escape(s['tenant'])}/{escape(s['name'])} added; next run "
                  f"{_when(s['next_run_at'])} UTC")


def schedules_delete(name: str, tenant: Annotated[str | None, typer.Option(
        help="admin keys: another tenant's")] = None) -> None:
    """Delete a schedule (the jobs it created stay)."""
    from .client import Api

    Api().call("DELETE", f"/v1/schedules/{name}", params={"tenant": tenant} if tenant else None)
    console.print(f"schedule {escape(name)} deleted")
