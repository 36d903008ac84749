"""/v1/schedules: periodic jobs of a tenant, run by `tidegate beat` once per slot.

Who may manage them: an admin key, any tenant's (``tenant`` in the body or query; default its
own); a submit key, its own tenant's only, since a schedule does nothing a submit key could not
do by hand (each job it creates passes the tenant's limits and budgets when it is created); a
read key may list its tenant's. Schedules from the settings file are changed there, not here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ...core import schedules as S
from ...core.errors import Forbidden, NotFound
from ...jobs.common import LLM_CONFIG
from ..deps import Caller, ContainerDep, Reader, Submitter
from ..params import TenantName
from ..schemas import AUTH_ERRORS, BODY_ERRORS, error_responses

router = APIRouter(tags=["schedules"], responses=AUTH_ERRORS)

_ONE = error_responses(**{"404": "no schedule of this name for this tenant"})


class ScheduleCreate(BaseModel):
    """Give ``cron`` (five fields, in ``timezone``) or ``every_s``, not both."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    tenant: TenantName | None = Field(default=None, description="admin keys only: another "
                                      "tenant's schedule")
    cron: str | None = Field(default=None, max_length=200, examples=["0 2 * * *"])
    every_s: int | None = Field(default=None, ge=1)
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    type: str = Field(max_length=100, description="a job type, as in POST /v1/jobs")
    input: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["high", "medium", "low"] | None = None
    missed: Literal["skip", "once"] = Field(
        default="once", description="slots missed while no scheduler ran: `once` runs the "
        "latest of them once, `skip` drops them")


class SchedulePublic(BaseModel):
    name: str
    tenant: str
    cron: str | None
    every_s: int | None
    timezone: str
    type: str
    input: dict[str, Any]
    priority: str | None
    missed: str
    source: Literal["api", "settings"]
    created_at: datetime
    last_run_at: datetime | None
    last_slot: datetime | None
    last_job_id: str | None
    last_error: str | None = Field(description="why the last slot created no job (its "
                                   "tenant's budget, limits...), if it did not")
    next_run_at: datetime | None


def _tenant_for(caller: Caller, tenant: str | None) -> str:
    if tenant is None or tenant == caller.tenant:
        return caller.tenant
    if not caller.is_admin:
        raise Forbidden("only an admin key may manage another tenant's schedules")
    return tenant


def _public(s: S.Schedule) -> SchedulePublic:
    return SchedulePublic(**S.to_public(s))


@router.post("/v1/schedules", status_code=201, response_model=SchedulePublic,
             responses={**BODY_ERRORS, **error_responses(
                 **{"409": "the tenant has a schedule of this name (`schedule_exists`)"})})
def create_schedule(body: ScheduleCreate, container: ContainerDep,
                    caller: Submitter) -> SchedulePublic:
    """Create a schedule; its first slot is the first due time after now. A bad cron, time
    zone, job type or input is 422 and creates nothing."""
    values = body.model_dump(exclude={"tenant"})
    schedule = S.parse(values, tenant=_tenant_for(caller, body.tenant),
                       registry=container.registry,
                       validation_context={LLM_CONFIG: container.llm_config})
    # The database's clock, which the scheduler measures slots against.
    schedule = replace(schedule, created_at=container.store.now())
    return _public(container.schedule_store.add_schedule(schedule))


@router.get("/v1/schedules", response_model=list[SchedulePublic])
def list_schedules(container: ContainerDep, caller: Reader,
                   tenant: Annotated[TenantName | None, Query()] = None
                   ) -> list[SchedulePublic]:
    """The caller's tenant's schedules (an admin: every tenant's, or ``tenant``'s), with their
    last run, next run and last job."""
    if caller.is_admin:
        found = container.schedule_store.list_schedules(tenant=tenant)
    else:
        found = container.schedule_store.list_schedules(tenant=_tenant_for(caller, tenant))
    return [_public(s) for s in found]


@router.get("/v1/schedules/{name}", response_model=SchedulePublic, responses=_ONE)
def get_schedule(name: str, container: ContainerDep, caller: Reader,
                 tenant: Annotated[TenantName | None, Query()] = None) -> SchedulePublic:
    s = container.schedule_store.get_schedule(_tenant_for(caller, tenant), name)
    if s is None:
        raise NotFound("no schedule of this name for this tenant")
    return _public(s)


@router.delete("/v1/schedules/{name}", status_code=204, response_class=Response,
               responses={**_ONE, **error_responses(
                   **{"409": "the schedule is defined in the settings file "
                             "(`managed_by_settings`)"})})
def delete_schedule(name: str, container: ContainerDep, caller: Submitter,
                    tenant: Annotated[TenantName | None, Query()] = None) -> Response:
    """Delete a schedule: no new jobs from it; the jobs it made stay."""
    owner = _tenant_for(caller, tenant)
    s = container.schedule_store.get_schedule(owner, name)
    if s is None:
        raise NotFound("no schedule of this name for this tenant")
    if s.source == "settings":
        raise S.ManagedBySettings(f"schedule {name!r} is defined in the settings file; "
                                  "remove it there")
    container.schedule_store.delete_schedule(owner, name)
    return Response(status_code=204)
