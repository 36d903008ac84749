"""Job types of an installed package, registered when Tidegate loads the entry point."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidegate.core.context import JobContext
from tidegate.core.registry import registry


class ShoutInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1000)


@registry.job_type("acme_shout", input_model=ShoutInput, priority="low")
def acme_shout(ctx: JobContext[ShoutInput]) -> dict[str, Any]:
    """Upper-case the text."""
    ctx.progress(50, "shouting")
    return {"text": ctx.input.text.upper()}
