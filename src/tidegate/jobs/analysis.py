"""`analyze_section`: structured feedback on a document section, validated against a schema."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.context import JobContext
from ..core.errors import JobFailed
from ..core.registry import registry
from .common import ModelField, ModelSpec, summarize_calls


class AnalysisInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    section: str = Field(min_length=1, max_length=200, description="the section's title")
    content: str = Field(min_length=1, max_length=200_000)
    model: ModelSpec = ModelField


class Feedback(BaseModel):
    """The schema the model's answer must match."""

    strengths: list[str] = Field(max_length=20)
    issues: list[str] = Field(max_length=20)
    suggestions: list[str] = Field(max_length=20)


SCHEMA_HINT = ('{"strengths": ["..."], "issues": ["..."], "suggestions": ["..."]} '
               "(each a list of short strings)")


def _parse(text: str) -> Feedback:
    cleaned = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    return Feedback.model_validate(json.loads(cleaned))


@registry.job_type("analyze_section", input_model=AnalysisInput, priority="high",
                   max_attempts=4)
def analyze_section(ctx: JobContext[AnalysisInput]) -> dict[str, Any]:
    """Review one section: strengths, issues and suggestions as JSON."""
    inp = ctx.input
    messages = [
        {"role": "system", "content": "You review business documents. Respond with JSON only."},
        {"role": "user", "content": f"Review the section \"{inp.section}\" below. Respond with "
         f"JSON exactly of the form {SCHEMA_HINT}.\n\n---\n{inp.content}"},
    ]
    ctx.progress(10, "Reviewing")
    resp, rec = ctx.llm.complete(messages, model=inp.model, max_output_tokens=800,
                                 json_output=True, step="review")
    calls = [rec.to_dict()]
    try:
        feedback = _parse(resp.text)
    except (ValueError, ValidationError) as first_error:
        # One repair attempt: show the model its answer and what was wrong with it.
        ctx.progress(60, "Repairing the model's JSON")
        repair = [*messages, {"role": "assistant", "content": resp.text},
                  {"role": "user", "content": f"That was not valid: {str(first_error)[:300]}. "
                   f"Respond with JSON only, exactly of the form {SCHEMA_HINT}."}]
        resp, rec = ctx.llm.complete(repair, model=inp.model, max_output_tokens=800,
                                     json_output=True, step="repair")
        calls.append(rec.to_dict())
        try:
            feedback = _parse(resp.text)
        except (ValueError, ValidationError) as exc:
            raise JobFailed("invalid_model_output",
                            f"the model's answer did not match the schema after one repair: "
                            f"{str(exc)[:300]}") from None
    return {"section": inp.section, "feedback": feedback.model_dump(), "calls": calls,
            "usage": summarize_calls(calls), "simulated": any(c["simulated"] for c in calls)}
