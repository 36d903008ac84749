"""Input fields and result helpers shared by the LLM job types."""

from __future__ import annotations

from typing import Any

from pydantic import Field

ModelField = Field(default=None, max_length=200,
                   description="`provider:model` (e.g. `openai:gpt-4o-mini`) or an alias from "
                   "the LLM settings; default: the job type's model from settings")


def summarize_calls(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the calls a job made, plus whether any of them was simulated."""
    return {
        "calls": len(records),
        "input_tokens": sum(r["input_tokens"] for r in records),
        "output_tokens": sum(r["output_tokens"] for r in records),
        "cost_usd": round(sum(r["cost_usd"] for r in records), 6),
    }
