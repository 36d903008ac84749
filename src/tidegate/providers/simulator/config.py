"""The simulator's knobs: one pydantic model, filled from defaults, TIDEGATE_SIM_* env vars,
CLI flags, and at run time from ``POST /_sim/config``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_PREFIX = "TIDEGATE_SIM_"

Rate = Field(default=0.0, ge=0.0, le=1.0)


class SimulatorConfig(BaseModel):
    """Defaults look like a modest real account: about a second per answer, 60 requests/minute."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 0
    # Latency before the first byte. uniform: U(min, max). lognormal: median at the midpoint,
    # a long right tail (sigma), never below min: what real providers look like under load.
    latency_dist: Literal["uniform", "lognormal"] = "uniform"
    latency_min_ms: float = Field(default=200.0, ge=0)
    latency_max_ms: float = Field(default=800.0, ge=0)
    latency_sigma: float = Field(default=0.6, ge=0)
    per_token_ms: float = Field(default=5.0, ge=0)  # added per output token; paces streams
    output_tokens_min: int = Field(default=150, ge=1)
    output_tokens_max: int = Field(default=450, ge=1)
    # Quotas, enforced as continuously refilled buckets; 0 means unlimited. A request is charged
    # its estimated input tokens plus its max output tokens, as OpenAI does at admission.
    rpm: int = Field(default=60, ge=0)
    tpm: int = Field(default=100_000, ge=0)
    input_tpm: int = Field(default=0, ge=0)  # Anthropic-style separate input/output limits
    output_tpm: int = Field(default=0, ge=0)
    quota_scope: Literal["key", "model"] = "model"  # per API key, or per (API key, model)
    # How input and output tokens are counted (see simulator/tokenizer.py): "chars4" is the
    # callers' own estimate; "classes" and "cl100k" disagree with it as real providers do.
    tokenizer: Literal["chars4", "classes", "cl100k"] = "chars4"
    context_window: int = Field(default=128_000, ge=1)  # larger prompts get the vendor's 400
    valid_keys: list[str] | None = None  # None: any non-empty key works
    # Fault injection: independent probabilities per request, checked in this order.
    error_500_rate: float = Rate
    error_503_rate: float = Rate
    error_529_rate: float = Rate
    hang_rate: float = Rate
    malformed_rate: float = Rate
    hang_s: float = Field(default=600.0, ge=0)  # "far beyond any client timeout"
    embedding_dims: int = Field(default=256, ge=8, le=4096)
    # Prompt caching as the vendors document it: Anthropic caches a prefix marked with
    # cache_control, OpenAI any prompt's first message automatically; a prefix shorter than
    # this is not cached; a hit keeps it for another cache_ttl_s.
    cache_min_tokens: int = Field(default=1024, ge=1)
    cache_ttl_s: float = Field(default=300.0, gt=0)
    # Batch APIs (OpenAI Batch, Anthropic Message Batches, Gemini batch mode): a batch is
    # answered whole batch_turnaround_s after its creation, or expires if that is later than
    # batch_expiry_s (the vendors' 24 h window). Its own quota, far larger than the ordinary
    # one: tokens enqueued in unfinished batches per key and model (0: unlimited), and requests
    # per batch. batch_error_rate: each request's chance to come back errored.
    batch_turnaround_s: float = Field(default=5.0, ge=0)
    batch_expiry_s: float = Field(default=86_400.0, gt=0)
    batch_queue_tokens: int = Field(default=5_000_000, ge=0)
    batch_max_requests: int = Field(default=50_000, ge=1)
    batch_error_rate: float = Rate

    @model_validator(mode="after")
    def _ranges(self) -> SimulatorConfig:
        if self.latency_max_ms < self.latency_min_ms:
            raise ValueError("latency_max_ms must be >= latency_min_ms")
        if self.output_tokens_max < self.output_tokens_min:
            raise ValueError("output_tokens_max must be >= output_tokens_min")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SimulatorConfig:
        """Defaults, then ``TIDEGATE_SIM_<FIELD>`` variables, then non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            if name == "valid_keys":
                values[name] = [k.strip() for k in raw.split(",") if k.strip()]
            else:
                values[name] = raw  # pydantic coerces "60" / "0.5" / "lognormal"
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def updated(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """A validated copy with ``changes`` applied (unknown fields are an error)."""
        return type(self).model_validate({**self.model_dump(), **dict(changes)})

    def quota_fields_differ(self, other: SimulatorConfig) -> bool:
        keys = ("rpm", "tpm", "input_tpm", "output_tpm", "quota_scope")
        return any(getattr(self, k) != getattr(other, k) for k in keys)


def fast_test_config(**changes: Any) -> SimulatorConfig:
    """No latency, generous quotas, short answers: what most tests want."""
    base: dict[str, Any] = dict(latency_min_ms=0, latency_max_ms=0, per_token_ms=0,
                                output_tokens_min=20, output_tokens_max=60, rpm=0, tpm=0)
    base.update(changes)
    return SimulatorConfig(**base)
