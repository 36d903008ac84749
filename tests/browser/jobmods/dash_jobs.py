"""A job type for the dashboard test: fails its first run, succeeds once replayed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.errors import JobFailed
from tidegate.core.registry import registry


class FlakyInput(BaseModel):
    name: str = "x"


@registry.job_type("dash_fails_once", input_model=FlakyInput, priority="high", max_attempts=1)
def dash_fails_once(ctx: JobContext[FlakyInput]) -> dict[str, str]:
    """Fails with `upstream_down` the first time; succeeds when replayed."""
    marker = Path(os.environ["DASH_MARKER_DIR"]) / ctx.job_id
    if not marker.exists():
        marker.touch()
        raise JobFailed("upstream_down", "the upstream service did not answer")
    return {"name": ctx.input.name, "replayed": "yes"}
