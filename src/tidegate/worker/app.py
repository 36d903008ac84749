"""The worker's Celery app: the shared configuration plus the one task, ``tidegate.run_job``."""

from __future__ import annotations

import logging

from celery import Celery

from ..adapters.celery_app import RUN_JOB, create_celery
from ..config import Settings
from . import runtime

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings) -> Celery:
    runtime.configure(settings)
    app = create_celery(settings)

    @app.task(name=RUN_JOB, shared=False, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(job_id: str) -> str:
        """Run one delivery of a job. Never raises: the row records every outcome."""
        if not isinstance(job_id, str) or len(job_id) > 64:
            log.error("dropping malformed run_job message: %r", job_id)
            return "malformed"
        rt = runtime.get_runtime()
        outcome = rt.runner.run(job_id)
        if outcome.kind == "retry":
            service = rt.container.service
            job = rt.container.store.get(job_id)
            if job is not None:
                # If this send fails, the sweep sends it (dispatched_at stays empty).
                service.dispatch(job, countdown_s=outcome.delay_s)
        return outcome.kind

    return app
