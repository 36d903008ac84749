"""Dependencies shared by the routes: the container, the caller (tenant and scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..adapters.keycache import NEEDS_IO
from ..core.errors import Forbidden, Unauthorized
from ..core.jsonsafe import require_storable
from ..core.keys import Scope, allows
from ..core.service import JobService
from ..wiring import Container

_bearer = HTTPBearer(auto_error=False, description="an API key from `tidegate keys create`")

LOCAL_TENANT = "local"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the key's tenant and scope (``key_id`` None with TIDEGATE_AUTH=off)."""

    tenant: str
    scope: str
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return allows(self.scope, Scope.ADMIN)

    @property
    def owner(self) -> str | None:
        """The tenant whose jobs this caller sees: its own, or every tenant's (None) for an
        admin. Another tenant's job stays 404, never 403."""
        return None if self.is_admin else self.tenant


# The dependencies are `async def` although they do no I/O of their own: FastAPI runs a plain
# `def` dependency in its thread pool, and four such hops per request cost more CPU than the
# submit's database work.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_service(container: Annotated[Container, Depends(get_container)]) -> JobService:
    return container.service


async def get_caller(request: Request, container: Annotated[Container, Depends(get_container)],
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                     ) -> Caller:
    if container.settings.auth == "off":
        return Caller(LOCAL_TENANT, Scope.ADMIN.value)
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    address = request.client.host if request.client else None
    keys = container.keys  # type: ignore[attr-defined]
    # Nearly always answered from the per-process cache; else read off the event loop.
    key = keys.authenticate_cached(creds.credentials)
    if key is NEEDS_IO:
        key = await run_in_threadpool(keys.authenticate, creds.credentials, address=address)
    if key is None:
        raise Unauthorized("invalid, expired or revoked API key")
    request.state.caller_key_id = key.id
    return Caller(key.tenant, key.scope, key.id)


def require(scope: Scope):  # type: ignore[no-untyped-def]
    """A dependency: the caller, if its key's scope includes ``scope``; else 403."""

    async def dependency(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if not allows(caller.scope, scope):
            raise Forbidden(f"this key's scope ({caller.scope}) does not allow this; it needs "
                            f"{scope.value}")
        return caller

    return dependency


async def get_tenant(caller: Annotated[Caller, Depends(require(Scope.READ))]) -> str:
    return caller.tenant


async def storable_body(request: Request) -> None:
    """Every JSON body, on every route: refuse text no store can hold and no response can
    carry (lone surrogates, NUL, NaN) with 422 invalid_request naming its path, before any
    route sees it. The service checks again, for callers that are not HTTP."""
    if request.method not in ("POST", "PUT", "PATCH") or not await request.body():
        return
    try:
        body = await request.json()  # FastAPI has parsed it already: this is its cached copy
    except ValueError:
        return  # not JSON: the route's own validation answers
    require_storable(body)


ContainerDep = Annotated[Container, Depends(get_container)]
ServiceDep = Annotated[JobService, Depends(get_service)]
TenantDep = Annotated[str, Depends(get_tenant)]
Reader = Annotated[Caller, Depends(require(Scope.READ))]
Submitter = Annotated[Caller, Depends(require(Scope.SUBMIT))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN))]
