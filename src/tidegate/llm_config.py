"""LLM settings: model aliases, prices, per-lane limits, per-job-type models and fallbacks.

Shipped defaults live in ``llm_defaults.toml`` beside this module; ``load_llm_config(path)``
merges a user TOML file (the app passes ``TIDEGATE_LLM_CONFIG``) over them and validates the
result, so a typo fails at start-up with the file and key named, not mid-job.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROVIDERS = ("openai", "anthropic", "gemini")


class LLMConfigError(ValueError):
    """The LLM settings file is unreadable or invalid; the message says where and why."""


def parse_lane(lane: str) -> tuple[str, str, str | None]:
    """``"provider:model[@account]"`` -> ``(provider, model, account)``; raises LLMConfigError."""
    spec, _, account = lane.partition("@")
    provider, sep, model = spec.partition(":")
    if not sep or not model or not provider:
        raise LLMConfigError(f"{lane!r} is not of the form provider:model[@account]")
    if provider not in PROVIDERS:
        raise LLMConfigError(f"unknown provider {provider!r} in {lane!r} "
                             f"(known: {', '.join(PROVIDERS)})")
    if "@" in lane and not account:
        raise LLMConfigError(f"empty account in {lane!r}")
    return provider, model, account or None


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)  # USD per million input tokens
    output: float = Field(default=0.0, ge=0)  # USD per million output tokens


class LaneLimits(BaseModel):
    """A lane's quotas; ``None`` means no limit of that kind."""

    model_config = ConfigDict(extra="forbid")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    input_tpm: int | None = Field(default=None, ge=1)
    output_tpm: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)


class JobModels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    sections: dict[str, str] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "openai:gpt-4o-mini"


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    lane_defaults: LaneLimits = Field(default_factory=LaneLimits)
    lanes: dict[str, LaneLimits] = Field(default_factory=dict)
    jobs: dict[str, JobModels] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)

    @model_validator(mode="after")
    def _check_references(self) -> LLMConfig:
        # Resolve everything once so unknown providers and dangling aliases fail at load.
        for name in self.aliases:
            if ":" in name:
                raise ValueError(f"alias {name!r} must not contain ':'")
            self.resolve(name)
        for key in self.prices:
            parse_lane(key)
        for key in self.lanes:
            if not key.endswith(":*"):
                parse_lane(key)
            elif key[:-2] not in PROVIDERS:
                raise ValueError(f"unknown provider in lane pattern {key!r}")
        self.resolve(self.defaults.model)
        for jm in self.jobs.values():
            for spec in [jm.model, *jm.sections.values()]:
                if spec is not None:
                    self.resolve(spec)
            for lane in jm.fallbacks:
                if "@" in lane:
                    parse_lane(lane)
                else:
                    self.resolve(lane)
        return self

    def resolve(self, spec: str) -> tuple[str, str]:
        """``"provider:model"`` or an alias -> ``(provider, model)``; LLMConfigError otherwise."""
        seen: list[str] = []
        while ":" not in spec:
            if spec not in self.aliases:
                raise LLMConfigError(f"unknown model {spec!r}: use provider:model "
                                     f"({', '.join(PROVIDERS)}) or an alias "
                                     f"({', '.join(sorted(self.aliases)) or 'none defined'})")
            if spec in seen:
                raise LLMConfigError(f"alias loop: {' -> '.join([*seen, spec])}")
            seen.append(spec)
            spec = self.aliases[spec]
        provider, model, _account = parse_lane(spec.partition("@")[0])
        return provider, model

    def lane(self, spec: str) -> str:
        """The canonical lane for a model spec or alias: ``"provider:model"``."""
        provider, model = self.resolve(spec)
        return f"{provider}:{model}"

    def cost_usd(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> float:
        """What a call cost, from the price table; 0.0 for models without a price."""
        price = self.prices.get(f"{provider}:{model.partition('@')[0]}")
        if price is None:
            return 0.0
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000

    def default_model(self, job_type: str, section: str | None = None) -> str:
        """The lane ``"provider:model"`` a job type (and optionally one section of it) uses."""
        jm = self.jobs.get(job_type)
        if jm is not None:
            if section is not None and section in jm.sections:
                return self.lane(jm.sections[section])
            if jm.model is not None:
                return self.lane(jm.model)
        return self.lane(self.defaults.model)

    def fallbacks(self, job_type: str, *, exclude: str | None = None) -> list[str]:
        """The job type's fallback lanes in order, without ``exclude`` (the lane that failed)."""
        jm = self.jobs.get(job_type)
        chain = [lane if "@" in lane else self.lane(lane) for lane in (jm.fallbacks if jm else [])]
        return [lane for lane in chain if lane != exclude]

    def lane_limits(self, lane: str) -> LaneLimits:
        """Limits for ``"provider:model[@account]"``: exact, then without the account, then
        ``"provider:*"``, then ``[lane_defaults]``."""
        provider, model, _account = parse_lane(lane)
        for key in (lane, f"{provider}:{model}", f"{provider}:*"):
            if key in self.lanes:
                return self.lanes[key]
        return self.lane_defaults


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LLMConfigError(f"{origin}: invalid TOML: {exc}") from exc


def load_llm_config(path: str | None = None) -> LLMConfig:
    """Shipped defaults, with the TOML file at ``path`` (if any) merged over them."""
    shipped = resources.files("tidegate").joinpath("llm_defaults.toml").read_text("utf-8")
    data = _read_toml(shipped, "llm_defaults.toml")
    origin = "llm_defaults.toml"
    if path:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise LLMConfigError(f"{path}: cannot read LLM config: {exc.strerror or exc}") from exc
        data = _deep_merge(data, _read_toml(text, path))
        origin = path
    try:
        return LLMConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False))
        raise LLMConfigError(f"{origin}: invalid LLM config: {problems}") from exc
