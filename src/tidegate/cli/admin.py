"""Admin commands: API keys and tenant settings, straight on the database (run them where the
database is reachable), and the usage report over the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from ..core.errors import TidegateError
from ..core.models import ApiKey, utcnow
from .common import console, fail, settings_or_exit

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="API keys: create, list, revoke, rotate.", no_args_is_help=True)
    keys.command("create")(keys_create)
    keys.command("list")(keys_list)
    keys.command("revoke")(keys_revoke)
    keys.command("rotate")(keys_rotate)
    app.add_typer(keys, name="keys", rich_help_panel="Admin")
    tenants = typer.Typer(help="Tenant limits, budgets and weight.", no_args_is_help=True)
    tenants.command("set")(tenants_set)
    tenants.command("list")(tenants_list)
    app.add_typer(tenants, name="tenants", rich_help_panel="Admin")
    app.command(rich_help_panel="Use")(usage)


@contextmanager
def _store() -> Iterator[Any]:
    from ..adapters.sql import SqlJobStore, make_engine

    settings = settings_or_exit()
    engine = make_engine(settings.database)
    try:
        yield SqlJobStore(engine), settings
    finally:
        engine.dispose()


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except TidegateError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(str(exc))


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M}"


def _state(k: ApiKey) -> str:
    return "revoked" if k.revoked_at else "active" if k.valid_at(utcnow()) else "expired"


def keys_create(
        tenant: Annotated[str, typer.Option(help="the key's owner")],
        scope: Annotated[str, typer.Option(help="admin (everything), submit (submit, read, "
                                           "cancel, retry own jobs) or read (read own jobs)")]
        = "submit",
        expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 30d, 12h")] = None,
        name: Annotated[str, typer.Option(help="a label shown in `keys list`")] = "") -> None:
    """Create an API key; the key is printed once and stored hashed."""
    from ..core.keys import create_key, parse_duration

    with _store() as (store, settings):
        at = None if expires is None else utcnow() + _run(lambda: parse_duration(expires))
        plain, record = _run(lambda: create_key(store, tenant=tenant, secret=settings.secret_key,
                                                scope=scope, name=name, expires_at=at))
    console.print(f"API key for tenant [bold]{escape(record.tenant)}[/], scope {record.scope}"
                  + (f", expires {_when(record.expires_at)} UTC" if record.expires_at else "")
                  + " (shown once):")
    print(plain)


def keys_list(tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None
              ) -> None:
    """List API keys (prefix, tenant, scope, state, last use) without their secrets."""
    with _store() as (store, _):
        found = _run(lambda: store.list_keys(tenant=tenant))
    table = Table("prefix", "tenant", "scope", "name", "created", "expires", "state",
                  "last used", "from")
    for k in found:
        table.add_row(k.prefix, k.tenant, k.scope, escape(k.name), _when(k.created_at),
                      _when(k.expires_at), _state(k), _when(k.last_used_at),
                      k.last_used_ip or "-")
    console.print(table if found else "no keys")


def keys_revoke(prefix: Annotated[str, typer.Argument(help="the key's prefix, as listed")]
                ) -> None:
    """Revoke a key: every API process refuses it within a second."""
    from ..core.keys import revoke

    with _store() as (store, _):
        record = _run(lambda: revoke(store, prefix))
    console.print(f"key {record.prefix} of tenant {escape(record.tenant)} revoked")


def keys_rotate(prefix: Annotated[str, typer.Argument(help="the key's prefix, as listed")],
                grace: Annotated[str, typer.Option(help="how long the old key stays valid")]
                = "24h") -> None:
    """Make a new key with the same tenant, scope and name; the old one stays valid for the
    grace period."""
    from ..core.keys import parse_duration, rotate

    with _store() as (store, settings):
        plain, new, old = _run(lambda: rotate(store, prefix, secret=settings.secret_key,
                                              grace=parse_duration(grace)))
    console.print(f"new key {new.prefix} for tenant {escape(new.tenant)} (shown once); "
                  f"{old.prefix} stays valid until {_when(old.expires_at)} UTC:")
    print(plain)


def tenants_set(
        tenant: Annotated[str, typer.Argument(help="the tenant's name")],
        submit_rpm: Annotated[int | None, typer.Option(help="submissions per minute")] = None,
        max_queued: Annotated[int | None, typer.Option(help="jobs waiting at once")] = None,
        max_running: Annotated[int | None, typer.Option(help="jobs running at once")] = None,
        max_streams: Annotated[int | None, typer.Option(help="open event streams")] = None,
        priorities: Annotated[str | None, typer.Option(
            help="allowed priorities, e.g. medium,low")] = None,
        daily_tokens: Annotated[int | None, typer.Option(help="token budget per UTC day")]
        = None,
        monthly_tokens: Annotated[int | None, typer.Option(help="per UTC month")] = None,
        daily_usd: Annotated[float | None, typer.Option(help="dollar budget per UTC day")]
        = None,
        monthly_usd: Annotated[float | None, typer.Option(help="per UTC month")] = None,
        weight: Annotated[float | None, typer.Option(help="fair-share weight (default 1)")]
        = None,
        clear: Annotated[list[str] | None, typer.Option(
            help="remove a limit, e.g. --clear daily_usd (repeatable)")] = None) -> None:
    """Set a tenant's limits, budgets and weight. Options left out keep their value."""
    from ..core.tenants import settings_from_public

    given = {k: v for k, v in {
        "submit_rpm": submit_rpm, "max_queued": max_queued, "max_running": max_running,
        "max_streams": max_streams, "priorities": priorities, "daily_tokens": daily_tokens,
        "monthly_tokens": monthly_tokens, "daily_usd": daily_usd, "monthly_usd": monthly_usd,
        "weight": weight}.items() if v is not None}
    for name in clear or []:
        given[name.replace("-", "_")] = None
    with _store() as (store, _):
        s = _run(lambda: settings_from_public(tenant, given, store.get_tenant(tenant)))
        store.put_tenant(s)
    console.print(f"tenant {escape(tenant)} updated (applied everywhere within seconds)")


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.4f}"


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def tenants_list() -> None:
    """Show every tenant's limits and budgets, with what it used today and this month."""
    from datetime import UTC

    from ..core.tenants import settings_to_public

    with _store() as (store, _):
        today = datetime.now(UTC).date()
        rows = []
        for s in _run(store.list_tenants):
            day = store.usage_since(s.name, today)
            month = store.usage_since(s.name, today.replace(day=1))
            rows.append((settings_to_public(s), day, month))
    table = Table("tenant", "rpm", "queued", "running", "streams", "priorities",
                  "tokens day (used/max)", "tokens month", "usd day", "usd month", "weight")
    for p, day, month in rows:
        table.add_row(
            p["name"], _n(p["submit_rpm"]), _n(p["max_queued"]), _n(p["max_running"]),
            _n(p["max_streams"]), ",".join(p["priorities"]) if p["priorities"] else "all",
            f"{day.input_tokens + day.output_tokens:,}/{_n(p['daily_tokens'])}",
            f"{month.input_tokens + month.output_tokens:,}/{_n(p['monthly_tokens'])}",
            f"{_money(day.cost_nanos / 1e9)}/{_money(p['daily_usd'])}",
            f"{_money(month.cost_nanos / 1e9)}/{_money(p['monthly_usd'])}",
            "-" if p["weight"] is None else f"{p['weight']:g}")
    console.print(table if rows else "no tenant has settings yet (`tidegate tenants set`)")


def usage(start: Annotated[str | None, typer.Option("--from", help="first UTC day, "
                                                     "YYYY-MM-DD (default: this month)")]
          = None,
          end: Annotated[str | None, typer.Option("--to", help="last UTC day (default: today)")]
          = None,
          group_by: Annotated[str, typer.Option(help="any of tenant,type,lane,day")]
          = "tenant") -> None:
    """LLM requests, tokens and cost per tenant, job type, lane or day (yours, or every
    tenant's with an admin key), and the calls answered from the cache or by an identical
    call in flight, with what they saved."""
    from .client import Api

    params = {"group_by": group_by, **({"from": start} if start else {}),
              **({"to": end} if end else {})}
    report = Api().call("GET", "/v1/usage", params=params)
    groups = report["group_by"]
    # Reused answers (cache, in-flight dedup) get their columns once there are any.
    reused = any(r.get("reused_requests") for r in report["rows"])
    table = Table(*groups, "requests", "input tokens", "output tokens", "cost",
                  *(("reused", "saved") if reused else ()),
                  title=f"usage {report['start']} .. {report['end']} (UTC)")
    for r in report["rows"]:
        table.add_row(*[escape(str(r[g])) for g in groups], f"{r['requests']:,}",
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                      f"${r['cost_usd']:,.6f}",
                      *((f"{r.get('reused_requests', 0):,}",
                         f"${r.get('saved_cost_usd', 0):,.6f}") if reused else ()))
    console.print(table if report["rows"] else "no usage in this period")
