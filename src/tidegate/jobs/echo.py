"""`echo`: returns its input after an optional sleep, reporting progress. A smoke-test job."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.context import JobContext
from ..core.registry import registry


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str = Field(default="", max_length=100_000)
    sleep_s: float = Field(default=0.0, ge=0, le=3600, description="total time to take")
    steps: int = Field(default=10, ge=1, le=1000, description="progress updates on the way")


@registry.job_type("echo", input_model=EchoInput, priority="medium", max_attempts=3)
def echo(ctx: JobContext[EchoInput]) -> dict[str, Any]:
    """Return the input unchanged, after sleeping ``sleep_s`` in ``steps`` steps."""
    step_s = ctx.input.sleep_s / ctx.input.steps
    for i in range(ctx.input.steps):
        ctx.sleep(step_s)
        ctx.progress(100 * (i + 1) / ctx.input.steps, f"step {i + 1}/{ctx.input.steps}")
    return ctx.input.model_dump()
