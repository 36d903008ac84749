"""Admin-only routes: API keys and tenant settings (limits, budgets, weight)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ...core import keys as K
from ...core.errors import InvalidInput, NotFound
from ...core.limits import MAX_WEIGHT, MIN_WEIGHT
from ...core.models import ApiKey, TenantSettings, utcnow
from ...core.tenants import (
    MAX_USD,
    settings_from_public,
    settings_to_public,
)
from ..deps import Admin, ContainerDep
from ..params import (
    KEY_REF_DESCRIPTION,
    KEY_REF_REGEX,
    TENANT_REGEX,
    Count,
    Number,
    TenantName,
    TokenCount,
)
from ..schemas import AUTH_ERRORS, BODY_ERRORS, error_responses

router = APIRouter(tags=["admin"], responses=AUTH_ERRORS)

KeyRef = Annotated[str, Path(pattern=KEY_REF_REGEX, description=KEY_REF_DESCRIPTION)]
TenantPath = Annotated[str, Path(pattern=TENANT_REGEX, description="the tenant's name")]

_KEY_ERRORS = error_responses(**{"404": "no key with this prefix or id",
                                 "422": "invalid request, or the prefix names several keys"})


class KeyCreate(BaseModel):
    tenant: TenantName
    scope: Literal["admin", "submit", "read"] = "submit"
    name: str = Field(default="", max_length=100)
    expires_in: str | None = Field(default=None, max_length=20,
                                   description="e.g. `30d`, `12h`; none: never expires")


class KeyRotate(BaseModel):
    grace: str = Field(default="24h", max_length=20,
                       description="how long the old key stays valid, e.g. `1h`, `7d`")


class KeyPublic(BaseModel):
    id: str
    prefix: str
    tenant: str
    scope: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    rotated_from: str | None
    state: Literal["active", "expired", "revoked"]

    @classmethod
    def of(cls, k: ApiKey) -> KeyPublic:
        state: Literal["active", "expired", "revoked"] = (
            "revoked" if k.revoked_at else "active" if k.valid_at(utcnow()) else "expired")
        return cls(id=k.id, prefix=k.prefix, tenant=k.tenant, scope=k.scope, name=k.name,
                   created_at=k.created_at, expires_at=k.expires_at, revoked_at=k.revoked_at,
                   last_used_at=k.last_used_at, last_used_ip=k.last_used_ip,
                   rotated_from=k.rotated_from, state=state)


class KeyCreated(BaseModel):
    key: str = Field(description="the API key itself: shown once, stored only as a hash")
    record: KeyPublic


class KeyRotated(BaseModel):
    key: str = Field(description="the new API key: shown once")
    record: KeyPublic
    old: KeyPublic


@router.get("/v1/keys", response_model=list[KeyPublic])
def list_keys(container: ContainerDep, _: Admin,
              tenant: Annotated[TenantName | None, Query()] = None) -> list[KeyPublic]:
    """Every API key (or one tenant's): scope, expiry, state and last use, never the key."""
    return [KeyPublic.of(k) for k in container.store.list_keys(tenant=tenant)]


@router.post("/v1/keys", status_code=201, response_model=KeyCreated,
             responses={**BODY_ERRORS})
def create_key(body: KeyCreate, container: ContainerDep, _: Admin) -> KeyCreated:
    """Create a key for a tenant with a scope (`admin`, `submit`, `read`) and optional
    expiry. The key is in this answer only."""
    expires = None if body.expires_in is None else utcnow() + K.parse_duration(body.expires_in)
    try:
        plain, record = K.create_key(container.store, tenant=body.tenant,
                                     secret=container.settings.secret_key, scope=body.scope,
                                     name=body.name, expires_at=expires)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    container.keys.changed()  # type: ignore[attr-defined]
    return KeyCreated(key=plain, record=KeyPublic.of(record))


@router.post("/v1/keys/{ref}/revoke", response_model=KeyPublic, responses=_KEY_ERRORS)
def revoke_key(ref: KeyRef, container: ContainerDep, _: Admin) -> KeyPublic:
    """Revoke a key (by prefix or id): every API process refuses it within a second."""
    record = K.revoke(container.store, ref)
    container.keys.changed()  # type: ignore[attr-defined]
    return KeyPublic.of(record)


@router.post("/v1/keys/{ref}/rotate", response_model=KeyRotated,
             responses={**_KEY_ERRORS, **BODY_ERRORS})
def rotate_key(ref: KeyRef, container: ContainerDep, _: Admin,
               body: KeyRotate | None = None) -> KeyRotated:
    """A new key with the same tenant, scope and name; the old one stays valid for the
    grace period (default 24 h), then is refused."""
    grace = K.parse_duration((body or KeyRotate()).grace)
    plain, new, old = K.rotate(container.store, ref, secret=container.settings.secret_key,
                               grace=grace)
    container.keys.changed()  # type: ignore[attr-defined]
    return KeyRotated(key=plain, record=KeyPublic.of(new), old=KeyPublic.of(old))


# -- tenants --------------------------------------------------------------------------------
class TenantUpdate(BaseModel):
    """Only the fields sent change; a field sent as null removes that limit. The bounds are
    core.tenants' (what the database holds)."""

    # An unknown field is refused, not ignored; `false` is no number.
    model_config = ConfigDict(extra="forbid")
    submit_rpm: Count | None = Field(default=None,
                                       description="submissions per minute")
    max_queued: Count | None = Field(default=None,
                                       description="jobs waiting at once")
    max_running: Count | None = Field(default=None,
                                        description="jobs running at once")
    max_streams: Count | None = Field(default=None,
                                        description="open event streams")
    priorities: list[Literal["high", "medium", "low"]] | None = Field(
        default=None, min_length=1, description="allowed priorities; none: all")
    daily_tokens: TokenCount | None = None
    monthly_tokens: TokenCount | None = None
    daily_usd: Number | None = Field(default=None, ge=0, le=MAX_USD)
    monthly_usd: Number | None = Field(default=None, ge=0, le=MAX_USD)
    weight: Number | None = Field(default=None, ge=MIN_WEIGHT, le=MAX_WEIGHT,
                                  description="share of a lane against other tenants "
                                  "waiting on it (default 1)")


class TenantUsed(BaseModel):
    daily_tokens: int
    monthly_tokens: int
    daily_usd: float
    monthly_usd: float


class TenantPublic(TenantUpdate):
    name: str
    updated_at: datetime | None = None
    used: TenantUsed


def _used(container: Any, name: str) -> TenantUsed:
    today = datetime.now(UTC).date()
    day = container.store.usage_since(name, today)
    month = container.store.usage_since(name, today.replace(day=1))
    return TenantUsed(daily_tokens=day.input_tokens + day.output_tokens,
                      monthly_tokens=month.input_tokens + month.output_tokens,
                      daily_usd=day.cost_nanos / 1e9, monthly_usd=month.cost_nanos / 1e9)


def _public(container: Any, s: TenantSettings) -> TenantPublic:
    return TenantPublic(**settings_to_public(s), used=_used(container, s.name))


@router.get("/v1/tenants", response_model=list[TenantPublic])
async def list_tenants(container: ContainerDep, _: Admin) -> list[TenantPublic]:
    """Every tenant with settings, and what it has used today and this month (UTC)."""
    def build() -> list[TenantPublic]:
        return [_public(container, s) for s in container.store.list_tenants()]

    return await run_in_threadpool(build)


@router.get("/v1/tenants/{name}", response_model=TenantPublic,
            responses=error_responses(**{"404": "this tenant has no settings"}))
def get_tenant(name: TenantPath, container: ContainerDep, _: Admin) -> TenantPublic:
    s = container.store.get_tenant(name)
    if s is None:
        raise NotFound("this tenant has no settings")
    return _public(container, s)


@router.put("/v1/tenants/{name}", response_model=TenantPublic, responses=BODY_ERRORS)
def put_tenant(name: TenantPath, body: TenantUpdate, container: ContainerDep, _: Admin
               ) -> TenantPublic:
    """Set a tenant's limits, budgets and weight; every API process and worker applies them
    within a few seconds."""
    s = settings_from_public(name, body.model_dump(exclude_unset=True),
                             container.store.get_tenant(name))
    container.store.put_tenant(s)
    container.tenant_gate.forget(name)
    return _public(container, s)
