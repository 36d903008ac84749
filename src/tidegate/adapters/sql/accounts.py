"""The AccountStore port on SQLAlchemy Core: API keys, tenant settings, usage per day."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ...core.errors import Unavailable
from ...core.models import ApiKey, TenantSettings, Usage, UsageRow, utcnow
from .tables import api_keys, tenants
from .tables import usage as usage_table

P = ParamSpec("P")
R = TypeVar("R")

GROUPS = ("tenant", "type", "lane", "day")


def guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn 'cannot reach the database' into Unavailable, which the API answers with 503."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise Unavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
        except sa.exc.TimeoutError as exc:  # every pooled connection busy: wait and retry
            raise Unavailable("database connection pool exhausted") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("database connection lost") from exc
            raise

    return wrapper


def _key(r: Any) -> ApiKey:
    return ApiKey(id=r.id, tenant=r.tenant, prefix=r.prefix, created_at=r.created_at,
                  revoked_at=r.revoked_at, scope=r.scope, name=r.name, expires_at=r.expires_at,
                  last_used_at=r.last_used_at, last_used_ip=r.last_used_ip,
                  rotated_from=r.rotated_from)


def _tenant(r: Any) -> TenantSettings:
    return TenantSettings(
        name=r.name, submit_rpm=r.submit_rpm, max_queued=r.max_queued,
        max_running=r.max_running, max_streams=r.max_streams,
        priorities=tuple(p for p in r.priorities.split(",") if p) if r.priorities is not None
        else None,
        daily_tokens=r.daily_tokens, monthly_tokens=r.monthly_tokens,
        daily_nano_usd=r.daily_nano_usd, monthly_nano_usd=r.monthly_nano_usd,
        weight=r.weight, updated_at=r.updated_at)


class SqlAccounts:
    engine: sa.Engine

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # -- keys -----------------------------------------------------------------------------
    @guard
    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(
                id=key.id, tenant=key.tenant, prefix=key.prefix, key_hash=key_hash,
                created_at=key.created_at, revoked_at=key.revoked_at, scope=key.scope,
                name=key.name, expires_at=key.expires_at, rotated_from=key.rotated_from,
                revision=0))

    def _one_key(self, *where: Any) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(*where)).first()
        return _key(row) if row else None

    @guard
    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        return self._one_key(api_keys.c.key_hash == key_hash)

    @guard
    def get_key(self, key_id: str) -> ApiKey | None:
        return self._one_key(api_keys.c.id == key_id)

    @guard
    def keys_by_prefix(self, prefix: str) -> builtins.list[ApiKey]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).where(
                api_keys.c.prefix.like(like, escape="\\"))).all()
        return [_key(r) for r in rows]

    @guard
    def list_keys(self, *, tenant: str | None = None) -> builtins.list[ApiKey]:
        q = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            q = q.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(q)]

    @guard
    def revoke_key(self, key_id: str, *, at: datetime) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(api_keys.update().where(
                api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None),
            ).values(revoked_at=at, revision=api_keys.c.revision + 1)).rowcount == 1

    @guard
    def expire_key(self, key_id: str, *, at: datetime) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(api_keys.update().where(
                api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None),
                sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > at),
            ).values(expires_at=at, revision=api_keys.c.revision + 1)).rowcount == 1

    @guard
    def keys_generation(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(api_keys.c.revision), 0))).one()
        return int(row[0]), int(row[1])

    @guard
    def touch_key(self, key_id: str, *, at: datetime, address: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(
                last_used_at=at, last_used_ip=address))

    # -- tenants --------------------------------------------------------------------------
    @guard
    def get_tenant(self, name: str) -> TenantSettings | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tenants).where(tenants.c.name == name)).first()
        return _tenant(row) if row else None

    @guard
    def put_tenant(self, settings: TenantSettings) -> None:
        values = {
            "name": settings.name, "submit_rpm": settings.submit_rpm,
            "max_queued": settings.max_queued, "max_running": settings.max_running,
            "max_streams": settings.max_streams,
            "priorities": None if settings.priorities is None else ",".join(settings.priorities),
            "daily_tokens": settings.daily_tokens, "monthly_tokens": settings.monthly_tokens,
            "daily_nano_usd": settings.daily_nano_usd,
            "monthly_nano_usd": settings.monthly_nano_usd, "weight": settings.weight,
            "updated_at": settings.updated_at or utcnow()}
        stmt = self._insert(tenants).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[tenants.c.name],
            set_={k: stmt.excluded[k] for k in values if k != "name"})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    @guard
    def list_tenants(self) -> builtins.list[TenantSettings]:
        with self.engine.connect() as conn:
            return [_tenant(r) for r in conn.execute(sa.select(tenants).order_by(tenants.c.name))]

    # -- usage ----------------------------------------------------------------------------
    @guard
    def add_usage(self, *, tenant: str, day: date, type: str, lane: str, usage: Usage,
                  requests: int = 1, reused: int = 0, saved: Usage | None = None) -> None:
        t = usage_table
        saved = saved or Usage()
        stmt = self._insert(t).values(
            tenant=tenant, day=day, type=type, lane=lane, requests=requests,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cost_nano_usd=usage.cost_nanos, reused_requests=reused,
            saved_input_tokens=saved.input_tokens, saved_output_tokens=saved.output_tokens,
            saved_cost_nano_usd=saved.cost_nanos)
        summed = ("requests", "input_tokens", "output_tokens", "cost_nano_usd",
                  "reused_requests", "saved_input_tokens", "saved_output_tokens",
                  "saved_cost_nano_usd")
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.day, t.c.type, t.c.lane],
            set_={c: t.c[c] + stmt.excluded[c] for c in summed})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    @guard
    def usage_since(self, tenant: str, since: date) -> Usage:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(
                sa.func.coalesce(sa.func.sum(usage_table.c.input_tokens), 0),
                sa.func.coalesce(sa.func.sum(usage_table.c.output_tokens), 0),
                sa.func.coalesce(sa.func.sum(usage_table.c.cost_nano_usd), 0),
            ).where(usage_table.c.tenant == tenant, usage_table.c.day >= since)).one()
        return Usage(int(row[0]), int(row[1]), int(row[2]))

    @guard
    def usage_report(self, *, tenant: str | None, start: date, end: date,
                     group_by: Sequence[str]) -> builtins.list[UsageRow]:
        u = usage_table.c
        cols = [u[g] for g in group_by]
        q = sa.select(*cols, sa.func.sum(u.requests), sa.func.sum(u.input_tokens),
                      sa.func.sum(u.output_tokens), sa.func.sum(u.cost_nano_usd),
                      sa.func.sum(u.reused_requests), sa.func.sum(u.saved_input_tokens),
                      sa.func.sum(u.saved_output_tokens), sa.func.sum(u.saved_cost_nano_usd),
                      ).where(u.day >= start, u.day <= end)
        if tenant is not None:
            q = q.where(usage_table.c.tenant == tenant)
        if cols:
            q = q.group_by(*cols).order_by(*cols)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            n = len(cols)
            if r[n] is None:  # no rows at all: SUM over nothing
                continue
            out.append(UsageRow({g: str(r[i]) for i, g in enumerate(group_by)},
                                int(r[n]), int(r[n + 1]), int(r[n + 2]), int(r[n + 3]),
                                int(r[n + 4]), Usage(int(r[n + 5]), int(r[n + 6]),
                                                     int(r[n + 7]))))
        return out
