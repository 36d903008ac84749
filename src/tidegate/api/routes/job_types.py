"""/v1/job-types: the registered job types and the JSON schema of their input."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import ServiceDep, TenantDep
from ..schemas import AUTH_ERRORS

router = APIRouter(prefix="/v1/job-types", tags=["jobs"], responses=AUTH_ERRORS)


class JobTypePublic(BaseModel):
    name: str
    description: str
    priority: str = Field(description="the queue it runs from unless a request overrides it")
    max_attempts: int
    input_schema: dict[str, Any] = Field(description="JSON Schema of `input`")


class JobTypeList(BaseModel):
    job_types: list[JobTypePublic]


@router.get("", response_model=JobTypeList)
def list_job_types(service: ServiceDep, _tenant: TenantDep) -> JobTypeList:
    """Every job type this API accepts, with the JSON schema its `input` must match (the
    dashboard builds its submit form from it)."""
    types = [service.registry.get(name) for name in service.registry.names()]
    return JobTypeList(job_types=[
        JobTypePublic(name=t.name, description=t.description, priority=t.priority.value,
                      max_attempts=t.max_attempts,
                      input_schema=t.input_model.model_json_schema())
        for t in types])
