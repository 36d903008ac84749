"""Dependencies shared by the routes: the container, the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core.errors import Unauthorized
from ..core.jsonsafe import require_storable
from ..core.keys import authenticate
from ..core.service import JobService
from ..wiring import Container

_bearer = HTTPBearer(auto_error=False, description="an API key from `tidegate keys create`")

LOCAL_TENANT = "local"


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_service(container: Annotated[Container, Depends(get_container)]) -> JobService:
    return container.service


def get_tenant(container: Annotated[Container, Depends(get_container)],
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if container.settings.auth == "off":
        return LOCAL_TENANT
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    tenant = authenticate(container.store, creds.credentials, container.settings.secret_key)
    if tenant is None:
        raise Unauthorized("invalid or revoked API key")
    return tenant


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
