"""`embeddings`: vectors for a list of texts, batched to the provider's limit."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.context import JobContext
from ..core.registry import registry
from .common import ModelField, ModelSpec


class EmbeddingsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, max_length=10_000)
    model: ModelSpec = ModelField


@registry.job_type("embeddings", input_model=EmbeddingsInput, priority="medium", max_attempts=4)
def embeddings(ctx: JobContext[EmbeddingsInput]) -> dict[str, Any]:
    """Embed every text; vectors come back in input order."""
    vectors, rec = ctx.llm.embed(ctx.input.texts, model=ctx.input.model)
    return {"vectors": vectors, "dimensions": len(vectors[0]) if vectors else 0,
            "count": len(vectors), **rec.to_dict(), "usage": rec.usage()}
