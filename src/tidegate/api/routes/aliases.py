"""The seeds' quick-start routes, kept as thin aliases over /v1/jobs."""

from __future__ import annotations

from fastapi import APIRouter

from ...adapters.metrics import count_submission
from ...core.errors import InvalidInput
from ..deps import Reader, ServiceDep, Submitter
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    SUBMIT_LIMIT_ERRORS,
    GenerateAccepted,
    GenerateRequest,
    LegacyStatus,
    error_responses,
)

router = APIRouter(tags=["seed aliases"], responses=AUTH_ERRORS)

REPORT_TYPE = "startup_report"


@router.post("/generate", status_code=202, response_model=GenerateAccepted,
             responses={**BODY_ERRORS, **SUBMIT_LIMIT_ERRORS})
def generate(body: GenerateRequest, service: ServiceDep, caller: Submitter) -> GenerateAccepted:
    """Submit a startup research report (same as POST /v1/jobs with type startup_report)."""
    if REPORT_TYPE not in service.registry:
        raise InvalidInput("the startup_report job type is not available in this build; "
                           "submit other job types through POST /v1/jobs")
    job, created = service.submit(tenant=caller.tenant, type=REPORT_TYPE,
                                  input=body.model_dump(exclude_none=True))
    count_submission(job, created)
    return GenerateAccepted(job_id=job.id, status=job.status.value)


@router.get("/status/{job_id}", response_model=LegacyStatus,
            responses=error_responses(**{"404": "no such job for this tenant"}))
def status(job_id: str, service: ServiceDep, caller: Reader) -> LegacyStatus:
    """Celery-style state of a job (PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)."""
    return LegacyStatus.of(service.get(job_id, tenant=caller.owner))
