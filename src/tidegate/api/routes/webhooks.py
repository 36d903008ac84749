"""/v1/webhooks: a tenant's default webhook endpoints; a job's delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ... import webhooks
from ...adapters.webhook_http import check_url
from ...config import Env
from ...core.errors import InvalidRequest, NotFound
from ...core.events import EVENT_KINDS
from ..deps import ContainerDep, Reader, ServiceDep, Submitter, TenantDep
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DeliveryPublic,
    WebhookCreated,
    WebhookSpec,
    error_responses,
)

router = APIRouter(tags=["webhooks"], responses=AUTH_ERRORS)

# After a rotation the old secret signs beside the new one this long, so receivers can switch.
ROTATION_OVERLAP_S = 24 * 3600.0

_NOT_FOUND = error_responses(**{"404": "no such webhook for this tenant"})


def checked(spec: WebhookSpec, container: ContainerDep) -> dict[str, Any]:
    """The webhook as stored: URL and event kinds checked (422 otherwise)."""
    check_url(spec.url, allow_http=container.settings.env is Env.DEV)
    if spec.events is not None:
        unknown = [k for k in spec.events if k != "*" and k not in EVENT_KINDS]
        if unknown or not spec.events:
            raise InvalidRequest("webhook.events: use event kinds (" +
                                 ", ".join(sorted(EVENT_KINDS)) + ") or \"*\"")
    return {"url": spec.url, "events": spec.events}


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated,
             responses=BODY_ERRORS)
def add_webhook(body: WebhookSpec, container: ContainerDep,
                caller: Submitter) -> WebhookCreated:
    """Register a default endpoint: it receives these events of every job of the tenant. The
    answer holds its signing secret, shown this once."""
    spec = checked(body, container)
    secret = webhooks.new_secret()
    created = container.webhook_store.add_endpoint(tenant=caller.tenant, url=spec["url"],
                                                   kinds=spec["events"], secret=secret)
    return WebhookCreated(**created, secret=secret)


@router.get("/v1/webhooks", response_model=list[WebhookCreated])
def list_webhooks(container: ContainerDep, tenant: TenantDep) -> list[WebhookCreated]:
    """The tenant's default endpoints (secrets are never shown again)."""
    return [WebhookCreated(**e) for e in container.webhook_store.list_endpoints(tenant=tenant)]


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=_NOT_FOUND)
def remove_webhook(webhook_id: str, container: ContainerDep, caller: Submitter) -> None:
    """Stop sending new events to it (deliveries already queued are still sent)."""
    if not container.webhook_store.remove_endpoint(tenant=caller.tenant, endpoint_id=webhook_id):
        raise NotFound(f"webhook {webhook_id[:40]!r} not found")


@router.post("/v1/webhooks/{webhook_id}/rotate", response_model=WebhookCreated,
             responses=_NOT_FOUND)
def rotate_webhook(webhook_id: str, container: ContainerDep,
                   caller: Submitter) -> WebhookCreated:
    """A new signing secret, shown this once. For 24 hours deliveries carry a signature with
    the old secret too (a second `v1=`), so the receiver can switch without losing any."""
    secret = webhooks.new_secret()
    rotated = container.webhook_store.rotate(tenant=caller.tenant, endpoint_id=webhook_id,
                                             secret=secret, overlap_s=ROTATION_OVERLAP_S)
    if rotated is None:
        raise NotFound(f"webhook {webhook_id[:40]!r} not found")
    return WebhookCreated(**rotated, secret=secret)


@router.get("/v1/jobs/{job_id}/deliveries", response_model=list[DeliveryPublic],
            responses=error_responses(**{"404": "no such job for this tenant"}))
async def job_deliveries(job_id: str, service: ServiceDep, container: ContainerDep,
                         caller: Reader) -> list[DeliveryPublic]:
    """Every webhook delivery of the job's events: status, attempts, last answer or error."""
    await run_in_threadpool(service.get, job_id, tenant=caller.owner)
    rows = await run_in_threadpool(container.webhook_store.for_job, job_id)
    return [DeliveryPublic(**r) for r in rows]
