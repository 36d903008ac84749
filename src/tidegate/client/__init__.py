"""Tidegate's Python client: submit, follow and manage jobs over the HTTP API.

::

    from tidegate.client import Client

    with Client("http://127.0.0.1:8000", api_key="tg_...") as tg:
        job = tg.submit("startup_report", {"startup": "Acme"})
        done = tg.wait(job.job_id, timeout=600)

It needs httpx and pydantic only: importing it never imports Celery, SQLAlchemy, Redis or a
provider SDK. Answers are the API's own models (``tidegate.api.schemas``).
"""

from ..api.schemas import (
    JobAccepted,
    JobEventPublic,
    JobPublic,
    JobStreamEvent,
    LaneReport,
    LimitsReport,
    QueuesReport,
    UsageReport,
)
from .aio import AsyncClient
from .errors import (
    APIError,
    BudgetExceeded,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    ServerError,
    TidegateError,
    TimeoutExpired,
    TransportError,
    Unauthorized,
    Unavailable,
)
from .sync import Client

__all__ = [
    "APIError", "AsyncClient", "BudgetExceeded", "Client", "Conflict", "Forbidden",
    "InvalidInput", "JobAccepted", "JobEventPublic", "JobPublic", "JobStreamEvent",
    "LaneReport", "LimitsReport", "NotFound", "QueuesReport", "RateLimited", "ServerError",
    "TidegateError", "TimeoutExpired", "TransportError", "Unauthorized", "Unavailable",
    "UsageReport",
]
