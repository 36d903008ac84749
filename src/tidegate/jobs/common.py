"""Input fields and result helpers shared by the LLM job types."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

from ..llm_config import LLMConfig, LLMConfigError, check_spec_syntax

LLM_CONFIG = "llm_config"
"""Key of the loaded :class:`LLMConfig` in the validation context (see ``JobService``)."""


def _check_model(value: str | None, info: ValidationInfo) -> str | None:
    """Refuse at submit what would fail later: an unknown alias or provider, a name that makes
    a bad request, a model the operator did not allow. Without the settings in the context
    (a worker re-reading a stored input) only the syntax is checked; the gateway checks again."""
    if value is None:
        return None
    config = (info.context or {}).get(LLM_CONFIG)
    try:
        if isinstance(config, LLMConfig):
            config.check_model(value)
        else:
            check_spec_syntax(value)
    except LLMConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


ModelSpec = Annotated[str | None, AfterValidator(_check_model)]
ModelField = Field(default=None, max_length=200,
                   description="`provider:model` (e.g. `openai:gpt-4o-mini`) or an alias from "
                   "the LLM settings; only models the operator configured (aliases, priced "
                   "models, `[models] allow`); default: the job type's model from settings")


def summarize_calls(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the calls a job made; no cost (``unpriced``) if any call's is unknown."""
    unpriced = any(r.get("unpriced") or r.get("cost_usd") is None for r in records)
    # Summed as exact decimals of the per-call figures (which are rounded to the nano-dollar).
    cost = sum((Decimal(str(r["cost_usd"])) for r in records if r.get("cost_usd") is not None),
               Decimal(0))
    return {
        "calls": len(records),
        "input_tokens": sum(r["input_tokens"] for r in records),
        "output_tokens": sum(r["output_tokens"] for r in records),
        "cost_usd": None if unpriced else float(cost),
        "unpriced": unpriced,
    }
