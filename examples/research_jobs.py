"""A job type of your own, built step by step in docs/job-types.md: ``company_brief``.

It answers a few questions about a company, one LLM call each, then writes a short brief
from the answers. What it shows:

- a typed input model (a bad submit is a 422 naming the field; the handler gets the model);
- progress reports (the dashboard's bar, ``tidegate status --wait``, SSE ``progress`` events);
- LLM calls through ``ctx.llm`` with a model and a fallback lane declared on the type (the
  shared rate limit, retries and cost accounting come with it);
- checkpoints: an answer already paid for is not asked again when a retry resumes the job;
- a custom error that fails the job at once instead of retrying (``JobFailed``).

Load it with ``TIDEGATE_JOB_MODULES=examples.research_jobs`` or, from a package of your own,
an entry point: ``[project.entry-points."tidegate.jobs"] research = "mypackage.research_jobs"``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidegate.core.context import JobContext
from tidegate.core.errors import JobFailed
from tidegate.core.registry import registry


class BriefInput(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored

    company: str = Field(min_length=1, max_length=200)
    questions: list[str] = Field(
        default=["What does it sell?", "Who are its customers?", "Who competes with it?"],
        min_length=1, max_length=10)


NOT_FOUND = "UNKNOWN COMPANY"


def _ask(ctx: JobContext[BriefInput], question: str, n: int) -> str:
    resp, _ = ctx.llm.complete(
        [{"role": "system", "content": "Answer in two sentences. If you do not know the "
          f"company, answer exactly {NOT_FOUND}."},
         {"role": "user", "content": f"{ctx.input.company}: {question}"}],
        max_output_tokens=150, step=f"question {n}")
    return resp.text.strip()


@registry.job_type("company_brief", input_model=BriefInput, priority="medium",
                   max_attempts=3, model="openai:gpt-4o-mini",
                   fallbacks=["anthropic:claude-3-5-haiku-latest"])
def company_brief(ctx: JobContext[BriefInput]) -> dict[str, Any]:
    """Answer questions about a company, then write a brief from the answers."""
    company = ctx.input.company
    steps = len(ctx.input.questions) + 1
    answers: dict[str, str] = {}
    for i, question in enumerate(ctx.input.questions):
        ctx.progress(100 * i / steps, f"Asking: {question}")
        # Saved in the job row once answered: a retry after a crash or a provider outage
        # starts at the first question not answered yet.
        answers[question] = ctx.checkpoint(f"q{i}", partial(_ask, ctx, question, i + 1))
        if answers[question] == NOT_FOUND:
            # Retrying cannot help: fail now, with a code the caller can act on.
            raise JobFailed("unknown_company", f"the model knows no company named {company!r}")
    ctx.progress(100 * (steps - 1) / steps, "Writing the brief")
    notes = "\n".join(f"- {q} {a}" for q, a in answers.items())
    brief, call = ctx.llm.complete(
        [{"role": "user", "content": f"Write a five-line brief on {company} from these "
          f"notes:\n{notes}"}], max_output_tokens=300, step="brief")
    return {"company": company, "answers": answers, "brief": brief.text.strip(),
            "brief_lane": call.lane}
