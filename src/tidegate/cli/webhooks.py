"""`tidegate webhooks`: the tenant's default webhook endpoints (add, list, remove, rotate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .common import console

if TYPE_CHECKING:
    from .client import Api

webhooks_app = typer.Typer(help="Webhook endpoints that receive your jobs' events, signed.",
                           no_args_is_help=True)


def _api() -> Api:
    from .client import Api

    return Api()


@webhooks_app.command("add")
def add(url: Annotated[str, typer.Argument(help="https://... (http:// too in dev)")],
        events: Annotated[str | None, typer.Option(
            help="comma-separated event kinds, or '*' for all; default: "
                 "succeeded,failed,cancelled")] = None) -> None:
    """Register an endpoint for every job of your tenant; prints its secret, once."""
    body: dict[str, object] = {"url": url}
    if events:
        body["events"] = [e.strip() for e in events.split(",") if e.strip()]
    hook = _api().call("POST", "/v1/webhooks", json=body)
    console.print(f"webhook [bold]{hook['id']}[/] → {escape(hook['url'])} "
                  f"({', '.join(hook['events'])})")
    console.print("signing secret (shown only now; verify with tidegate.webhooks.verify):")
    print(hook["secret"])


@webhooks_app.command("list")
def list_() -> None:
    """Your tenant's endpoints (without secrets)."""
    table = Table("id", "url", "events", "created")
    for hook in _api().call("GET", "/v1/webhooks"):
        table.add_row(hook["id"], escape(hook["url"]), ", ".join(hook["events"]),
                      hook["created_at"][:19])
    console.print(table)


@webhooks_app.command("remove")
def remove(webhook_id: str) -> None:
    """Stop sending new events to an endpoint."""
    _api().call("DELETE", f"/v1/webhooks/{webhook_id}")
    console.print(f"webhook {webhook_id} removed")


@webhooks_app.command("rotate")
def rotate(webhook_id: str) -> None:
    """A new signing secret, printed once; the old one still signs beside it for 24 h."""
    hook = _api().call("POST", f"/v1/webhooks/{webhook_id}/rotate")
    console.print("new signing secret (shown only now; the old one stays valid for 24 h):")
    print(hook["secret"])
