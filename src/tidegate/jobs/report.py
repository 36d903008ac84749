"""`startup_report`: a multi-step research pipeline, one LLM call per section, then a synthesis.

Each finished section is checkpointed in the job row, so a retried or restarted job resumes
after the last finished section instead of paying for it again.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.context import JobContext
from ..core.registry import registry
from .common import ModelField, ModelSpec, summarize_calls

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("market", "Market", "the market: its size, growth, customers and timing"),
    ("product", "Product", "the product: what it does, how it is different, its technology"),
    ("team", "Team", "the founding team: backgrounds, strengths and gaps"),
    ("competition", "Competition", "the competition: incumbents, startups, substitutes and "
     "the defensibility of this company"),
    ("risks", "Risks", "the main risks: market, execution, regulation, financing"),
    ("verdict", "Verdict", "an investment verdict: invest, watch or pass, with reasons"),
)
STEPS = len(SECTIONS) + 1  # the sections, then the synthesis

SYSTEM = ("You are a venture-capital analyst writing a concise, factual research memo. "
          "Write in plain Markdown paragraphs, no headings.")


class ReportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    startup: str = Field(min_length=1, max_length=500, description="the company to research")
    focus: str | None = Field(default=None, max_length=2000,
                              description="what the memo should pay most attention to")
    context: str | None = Field(default=None, max_length=400_000,
                                description="material to research from: a pitch deck's text, "
                                "notes, filings (sent once per section, cached by the "
                                "provider where it can)")
    model: ModelSpec = ModelField


def _system(inp: ReportInput) -> str:
    """What every section's call shares, first and identical, so that the provider's prompt
    cache serves it to the later sections at a fraction of the input price."""
    focus = f" Pay particular attention to: {inp.focus}." if inp.focus else ""
    material = (f"\n\nThe material to research from:\n<material>\n{inp.context}\n</material>"
                if inp.context else "")
    return f"{SYSTEM}\n\nWe are researching the startup {inp.startup}.{focus}{material}"


def _section_prompt(about: str) -> str:
    return f"Write the section of the memo about {about}. Three short paragraphs at most."


def _synthesis_prompt(inp: ReportInput, sections: dict[str, Any]) -> str:
    body = "\n\n".join(f"## {title}\n{sections[key]['text']}" for key, title, _ in SECTIONS)
    return (f"Here are the sections of a research memo on the startup {inp.startup}:\n\n"
            f"{body}\n\nWrite a short executive summary (one paragraph) of the memo.")


@registry.job_type("startup_report", input_model=ReportInput, priority="medium",
                   max_attempts=5)
def startup_report(ctx: JobContext[ReportInput]) -> dict[str, Any]:
    """Research a startup section by section and write a Markdown report."""
    inp = ctx.input
    llm = ctx.llm
    sections: dict[str, Any] = {k: v for k, v in ctx.saved.items() if k != "synthesis"}
    for i, (key, title, about) in enumerate(SECTIONS, start=1):
        if key in sections:  # finished by an earlier attempt
            continue
        ctx.progress(100 * (i - 1) / STEPS, f"Researching {title.lower()} ({i}/{STEPS})")
        resp, rec = llm.complete([{"role": "system", "content": _system(inp)},
                                  {"role": "user", "content": _section_prompt(about)}],
                                 model=inp.model, section=key, max_output_tokens=500,
                                 step=key, cache_prefix=True)
        sections[key] = {"text": resp.text.strip(), **rec.to_dict()}
        ctx.save(key, sections[key], progress=100 * i / STEPS,
                 message=f"Finished {title.lower()} ({i}/{STEPS})")
    synthesis = ctx.saved.get("synthesis")
    if synthesis is None:
        ctx.progress(100 * len(SECTIONS) / STEPS, f"Writing the summary ({STEPS}/{STEPS})")
        resp, rec = llm.complete([{"role": "system", "content": _system(inp)},
                                  {"role": "user", "content": _synthesis_prompt(inp, sections)}],
                                 model=inp.model, section="synthesis", max_output_tokens=300,
                                 step="synthesis", cache_prefix=True)
        synthesis = {"text": resp.text.strip(), **rec.to_dict()}
        ctx.save("synthesis", synthesis, progress=99, message="Assembling the report")
    report = "\n\n".join(
        [f"# {inp.startup}: research memo", "## Summary", synthesis["text"]]
        + [part for key, title, _ in SECTIONS for part in (f"## {title}", sections[key]["text"])])
    calls = [*(sections[k] for k, _, _ in SECTIONS), synthesis]
    return {
        "startup": inp.startup,
        "report": report,
        "sections": {k: {f: v for f, v in sections[k].items() if f != "text"}
                     for k, _, _ in SECTIONS} | {"synthesis": {
                         f: v for f, v in synthesis.items() if f != "text"}},
        "usage": summarize_calls(calls),
        "simulated": any(c.get("simulated") for c in calls),
    }
