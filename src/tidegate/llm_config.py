"""LLM settings: model aliases, prices, per-lane limits, per-job-type models and fallbacks.

Shipped defaults live in ``llm_defaults.toml`` beside this module; ``load_llm_config(path)``
merges a user TOML file (the app passes ``TIDEGATE_LLM_CONFIG``) over them and validates the
result, so a typo fails at start-up with the file and key named, not mid-job.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .core.errors import shorten

PROVIDERS = ("openai", "anthropic", "gemini")


class JobTypeModels(Protocol):
    """What a job type declares in code about its models (core.registry.JobType)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def fallbacks(self) -> Sequence[str]: ...
    @property
    def dedup(self) -> bool: ...
    @property
    def cache_ttl_s(self) -> float | None: ...


class LLMConfigError(ValueError):
    """The LLM settings file is unreadable or invalid; the message says where and why."""


# What a model name may contain: vendors' ids ("gpt-4o-2024-08-06", "claude-3-5-haiku-latest"),
# fine-tunes ("ft:gpt-4o-mini:org::id"), OpenAI-compatible servers' names ("meta-llama/Llama-3-8B",
# "llama3:8b"). Nothing that changes a request URL or its headers: no "?", "#", "%", spaces,
# control characters, no ".." path segments.
_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_SPEC = 200


def _check_model_name(model: str, lane: str) -> None:
    if (len(model) > MAX_SPEC or not _MODEL_RE.fullmatch(model)
            or ".." in model or "//" in model):
        raise LLMConfigError(f"invalid model name in {lane!r}: letters, digits and . _ : / + - "
                             "only, no '..'")


def parse_lane(lane: str) -> tuple[str, str]:
    """``"provider:model"`` -> ``(provider, model)``; raises LLMConfigError."""
    provider, sep, model = lane.partition(":")
    if not sep or not model or not provider:
        raise LLMConfigError(f"{lane!r} is not of the form provider:model")
    if provider not in PROVIDERS:
        raise LLMConfigError(f"unknown provider {provider!r} in {lane!r} "
                             f"(known: {', '.join(PROVIDERS)})")
    if "@" in model:
        # One API key per provider for now: two "accounts" would be two limiter lanes drawing
        # on one real quota, which is worse than one honest lane.
        raise LLMConfigError(f"{lane!r}: accounts (provider:model@account) are not supported; "
                             "Tidegate uses one API key per provider")
    _check_model_name(model, lane)
    return provider, model


def check_spec_syntax(spec: str) -> None:
    """What can be checked without the settings: an alias name or a well-formed lane."""
    if ":" in spec:
        parse_lane(spec)
    elif len(spec) > MAX_SPEC or not _ALIAS_RE.fullmatch(spec):
        raise LLMConfigError(f"invalid model {shorten(spec)}: use provider:model or an alias")


# Snapshot suffixes the vendors put after a model family: -2024-08-06 and -0613 (OpenAI),
# -20241022 and -latest (Anthropic), -001 (Gemini). A snapshot costs its family's price.
_SNAPSHOT_RE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest)$")


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Exact decimals (the TOML is parsed with Decimal floats): money never passes through float.
    input: Decimal = Field(ge=0)  # USD per million input tokens
    output: Decimal = Field(default=Decimal(0), ge=0)  # USD per million output tokens


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
    # No call paid twice (llm/reuse.py): identical calls made at once share one answer;
    # answers kept this long answer later identical calls. Off unless the type opts in.
    dedup: bool = False
    cache_ttl_s: float | None = Field(default=None, gt=0)


class ReuseSettings(BaseModel):
    """Whether shared answers (dedup, cache) cross tenants; by default each tenant has its
    own, so no tenant can learn what another asked."""

    model_config = ConfigDict(extra="forbid")
    shared_across_tenants: bool = False


class JobLimits(BaseModel):
    """A job type's own limits, over what it declares: runs started per minute, runs at once."""

    model_config = ConfigDict(extra="forbid")
    per_minute: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "openai:gpt-4o-mini"


class Models(BaseModel):
    """Which models a job may name, beyond the aliases, the price table and the job types'
    own models: ``"provider:model"`` patterns, ``*`` matching any run of characters."""

    model_config = ConfigDict(extra="forbid")
    allow: list[str] = Field(default_factory=list)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    models: Models = Field(default_factory=Models)
    lane_defaults: LaneLimits = Field(default_factory=LaneLimits)
    lanes: dict[str, LaneLimits] = Field(default_factory=dict)
    jobs: dict[str, JobModels] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    reuse: ReuseSettings = Field(default_factory=ReuseSettings)
    # Per job type: runs started per minute and at once, across workers (core/type_limits.py).
    job_limits: dict[str, JobLimits] = Field(default_factory=dict)
    # Periodic jobs, checked against the job types by the scheduler (core/schedules.py).
    schedules: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_references(self) -> LLMConfig:
        # Resolve everything once so unknown providers and dangling aliases fail at load.
        for name in self.aliases:
            if ":" in name:
                raise ValueError(f"alias {name!r} must not contain ':'")
            check_spec_syntax(name)
            self.resolve(name)
        for key in self.prices:
            parse_lane(key)
        for key in self.lanes:
            if not key.endswith(":*"):
                parse_lane(key)
            elif key[:-2] not in PROVIDERS:
                raise ValueError(f"unknown provider in lane pattern {key!r}")
        for pattern in self.models.allow:
            parse_lane(pattern.replace("*", "x"))  # a wildcard stands for model characters
        self.resolve(self.defaults.model)
        for jm in self.jobs.values():
            for spec in [jm.model, *jm.sections.values(), *jm.fallbacks]:
                if spec is not None:
                    self.resolve(spec)
        return self

    def with_job_defaults(self, types: Iterable[JobTypeModels]) -> LLMConfig:
        """These settings with each job type's own model, fallbacks and reuse (declared in
        code, ``@registry.job_type(..., model=, fallbacks=, dedup=, cache_ttl_s=)``) where the
        settings' ``[jobs.<name>]`` does not set that field: the operator's file always wins.
        Raises LLMConfigError naming the job type when its declared model does not resolve."""
        jobs = dict(self.jobs)
        for t in types:
            declared = {"model": t.model, "fallbacks": list(t.fallbacks), "dedup": t.dedup,
                        "cache_ttl_s": t.cache_ttl_s}
            if not any(declared.values()):
                continue
            jm = jobs.get(t.name)
            given = jm.model_dump(include=jm.model_fields_set) if jm is not None else {}
            jobs[t.name] = JobModels(**{**declared, **given})
            try:
                for spec in [jobs[t.name].model, *jobs[t.name].fallbacks]:
                    if spec is not None:
                        self.resolve(spec)
            except ValueError as exc:
                raise LLMConfigError(f"job type {t.name!r}: {exc}") from None
        return self.model_copy(update={"jobs": jobs})

    def resolve(self, spec: str) -> tuple[str, str]:
        """``"provider:model"`` or an alias -> ``(provider, model)``; LLMConfigError otherwise."""
        seen: list[str] = []
        while ":" not in spec:
            if spec not in self.aliases:
                raise LLMConfigError(f"unknown model {shorten(spec)}: use provider:model "
                                     f"({', '.join(PROVIDERS)}) or an alias "
                                     f"({', '.join(sorted(self.aliases)) or 'none defined'})")
            if spec in seen:
                raise LLMConfigError(f"alias loop: {' -> '.join([*seen, spec])}")
            seen.append(spec)
            spec = self.aliases[spec]
        return parse_lane(spec)

    def lane(self, spec: str) -> str:
        """The canonical lane for a model spec or alias: ``"provider:model"``."""
        provider, model = self.resolve(spec)
        return f"{provider}:{model}"

    # -- what a job may ask for -------------------------------------------------------------
    def configured_models(self) -> set[str]:
        """Every lane the operator named: alias targets, priced models, job types' models."""
        lanes = {self.lane(a) for a in self.aliases} | set(self.prices)
        lanes.add(self.lane(self.defaults.model))
        for jm in self.jobs.values():
            lanes.update(self.lane(s) for s in [jm.model, *jm.sections.values(), *jm.fallbacks]
                         if s is not None)
        return lanes

    def allowed_models(self) -> list[str]:
        """What a job's ``model`` may be, for error messages: aliases, lanes, patterns."""
        return [*sorted(self.aliases), *sorted(self.configured_models()),
                *sorted(self.models.allow)]

    def check_model(self, spec: str) -> str:
        """The lane a job's ``model`` names, if the operator allows it; LLMConfigError if not.

        Lanes are the operator's: each one is limiter state in Redis, a metrics label and a
        quota snapshot per scrape, so a tenant may not create them by naming new models."""
        check_spec_syntax(spec)
        lane = self.lane(spec)
        if lane in self.configured_models() or any(
                fnmatch.fnmatchcase(lane, p) for p in self.models.allow):
            return lane
        raise LLMConfigError(f"model {shorten(spec)} is not allowed here; allowed: "
                             f"{', '.join(self.allowed_models())} "
                             "(operators add more under [models] allow in the LLM settings)")

    # -- money ------------------------------------------------------------------------------
    def price(self, provider: str, model: str) -> Price | None:
        """The model's price, or its family's for a dated snapshot (gpt-4o-2024-08-06 costs
        what gpt-4o costs; claude-3-5-haiku-20241022 what claude-3-5-haiku-latest costs)."""
        candidates = [model]
        family = _SNAPSHOT_RE.sub("", model)
        if family != model:
            candidates += [family, f"{family}-latest"]
        for name in candidates:
            price = self.prices.get(f"{provider}:{name}")
            if price is not None:
                return price
        return None

    def cost_usd(self, provider: str, model: str, input_tokens: int,
                 output_tokens: int) -> Decimal | None:
        """What a call cost, exactly; ``None`` for a model without a price (not a false zero)."""
        price = self.price(provider, model)
        if price is None:
            return None
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
        chain = [self.lane(lane) for lane in (jm.fallbacks if jm else [])]
        return [lane for lane in chain if lane != exclude]

    def reuse_of(self, job_type: str) -> tuple[bool, float | None]:
        """(in-flight dedup on, cache TTL or None) for a job type's calls."""
        jm = self.jobs.get(job_type)
        return (jm.dedup, jm.cache_ttl_s) if jm is not None else (False, None)

    def lane_limits(self, lane: str) -> LaneLimits:
        """Limits for ``"provider:model"``: exact, then ``"provider:*"``, then
        ``[lane_defaults]``."""
        provider, model = parse_lane(lane)
        for key in (f"{provider}:{model}", f"{provider}:*"):
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
        return tomllib.loads(text, parse_float=Decimal)
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
