"""LLMGateway: one provider call, done the way a shared quota demands.

For every call a handler makes (``ctx.llm.complete(...)``):

1. resolve the model spec to a lane (``provider:model``) and its fallback chain;
2. ask the shared limiter for a reservation (requests, input/output tokens, concurrency),
   estimating tokens up front; a short wait is slept in place, a long one gives the worker
   slot back (:class:`RetryLater`, not counted as an attempt);
3. call the provider through its SDK in a helper thread, so that cancellation, a worker
   shutdown, a lost lease or the time limit stops waiting within a fraction of a second, cuts
   the HTTP request off (it stops being generated and billed) and frees the reservation;
4. settle the reservation against the real usage, learn from the rate-limit headers, add
   usage and cost to the job (exact, in nano-dollars; ``unpriced`` for a model without a
   price). A cut-off call that returned anyway is added to the job late: the provider bills it;
5. on a 429 pause the lane for everybody and try again (not a failed attempt); on a transient
   error move to the next lane of the fallback chain, or retry the job later with backoff; on
   a permanent error fail the job at once with a clear code.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..core.backoff import DEFAULT_BASE_S, DEFAULT_CAP_S, full_jitter
from ..core.context import JobContext
from ..core.errors import JobCancelled, JobFailed, LeaseLost, RetryLater, WorkerStopping
from ..core.limits import MAX_WEIGHT, MIN_WEIGHT, Admission, LaneLimits, Limiter
from ..core.limits import calibration as cal
from ..core.llm import (
    EmbeddingResponse,
    LLMRequest,
    LLMResponse,
    Message,
    ProviderError,
    RateLimited,
    TransientError,
)
from ..core.models import Usage
from ..core.spending import Hold, Spending
from ..llm_config import LLMConfig, LLMConfigError
from ..logs import job_fields
from ..providers import Providers, abort
from ..providers.tokens import estimate_messages_tokens, estimate_tokens
from . import metrics
from .reuse import Answer, AnswerStore, reuse_key

# How often a call waiting for an identical call in flight looks for its answer.
FOLLOW_POLL_S = 0.1

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    short_wait_s: float = 3.0  # wait for quota in place up to this; longer gives the slot back
    # A job that gave its slot back is sent again this much before its turn and waits the
    # rest in place: the way back (countdown, delivery, claim, the handler up to its call)
    # takes a moment, and a turn missed is quota unused.
    requeue_lead_s: float = 1.0
    # A longer wait is a forecast: it counts the needs of the waiters ahead as estimated then
    # (before the lane's token counts were calibrated, before a resync corrected its level).
    # The job asks again halfway, so a forecast that proves long costs half its error at most.
    recheck_over_s: float = 60.0
    fallback_after_s: float = 10.0  # a lane paused longer than this sends calls down the chain
    poll_s: float = 0.2  # how often an in-flight call checks for cancellation
    reservation_slack_s: float = 30.0  # reservation TTL beyond the call's own timeout
    embed_batch: int = 256  # texts per embeddings request
    # From Settings (TIDEGATE_RETRY_BACKOFF_*_S) through the worker's runtime, as the runner's.
    backoff_base_s: float = DEFAULT_BASE_S
    backoff_cap_s: float = DEFAULT_CAP_S


@dataclass
class CallRecord:
    """What one logical call cost and which lane answered it (jobs put this in results)."""

    lane: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_nanos: int  # exact, USD x 1e9
    latency_s: float
    simulated: bool
    lanes_tried: list[str] = field(default_factory=list)
    unpriced: bool = False  # the model has no price: the cost is unknown, not zero
    # Of input_tokens: read from / written to the provider's prompt cache (priced apart).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # "cache" or "inflight" when another call's answer was reused (no provider call).
    reused: str | None = None

    @property
    def cost_usd(self) -> float | None:
        """For JSON: the cost to the nano-dollar, or None when the model has no price."""
        return None if self.unpriced else Usage(cost_nanos=self.cost_nanos).public_cost_usd()

    def usage(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "unpriced": self.unpriced}

    def to_dict(self) -> dict[str, Any]:
        return {"lane": self.lane, "model": f"{self.provider}:{self.model}",
                **self.usage(), "latency_s": round(self.latency_s, 3),
                "simulated": self.simulated,
                **({"lanes_tried": self.lanes_tried} if len(self.lanes_tried) > 1 else {}),
                **({"cache_read_tokens": self.cache_read_tokens,
                    "cache_write_tokens": self.cache_write_tokens}
                   if self.cache_read_tokens or self.cache_write_tokens else {}),
                **({"reused": self.reused} if self.reused else {})}


def _to_limits(cfg: Any) -> LaneLimits:
    return LaneLimits(rpm=cfg.rpm, input_tpm=cfg.input_tpm, output_tpm=cfg.output_tpm,
                      tpm=cfg.tpm, concurrency=cfg.concurrency)


class LLMGateway:
    """Shared by all jobs of a worker process."""

    def __init__(self, providers: Providers, limiter: Limiter, config: LLMConfig, *,
                 policy: GatewayPolicy | None = None, max_parallel_calls: int = 64,
                 spending: Spending | None = None,
                 calibration: cal.Calibrator | None = None,
                 answers: AnswerStore | None = None,
                 weights: Callable[[str], float] | None = None) -> None:
        self.providers = providers
        # Where identical calls share answers (llm/reuse.py); None: never shared.
        self.answers = answers
        # Each tenant's share of a lane against the others waiting on it; None: all equal.
        self.weights = weights
        # Per-lane learned token ratios; None: reserve the raw chars/4 estimate (unit tests).
        self.calibration = calibration
        # Tenant budgets and persisted usage; None: neither (unit tests, experiments).
        self.spending = spending
        self.limiter = limiter
        self.config = config
        self.policy = policy or GatewayPolicy()
        self._pool = ThreadPoolExecutor(max_parallel_calls, thread_name_prefix="llm-call")
        self._configured: dict[str, LaneLimits] = {}
        self._lock = threading.Lock()

    def bind(self, ctx: JobContext[Any]) -> JobLLM:
        return JobLLM(self, ctx)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- lanes ------------------------------------------------------------------------------
    def lane_of(self, spec: str) -> str:
        """The lane for a model spec; a job accepted under other settings fails clearly."""
        try:
            return self.config.check_model(spec)
        except LLMConfigError as exc:
            raise JobFailed("invalid_model", str(exc)) from None

    def ensure_configured(self, lane: str) -> LaneLimits:
        """The settings' limits for ``lane``, pushed to the shared limiter once per process.
        Every acquire sends them too, so a limiter that lost them (Redis restarted empty) has
        them back on the next call instead of granting everything."""
        limits = self._configured.get(lane)
        if limits is not None:
            return limits
        with self._lock:
            if lane not in self._configured:
                limits = _to_limits(self.config.lane_limits(lane))
                self.limiter.configure(lane, limits)
                self._configured[lane] = limits
            return self._configured[lane]

    def weight_of(self, tenant: str) -> float:
        """The tenant's fair-share weight, clamped to what the limiter accepts."""
        if self.weights is None:
            return 1.0
        try:
            w = float(self.weights(tenant))
        except Exception:  # a share is not worth failing the call
            log.warning("weight of tenant %s unavailable; using 1", tenant, exc_info=True)
            return 1.0
        return min(MAX_WEIGHT, max(MIN_WEIGHT, w)) if w == w else 1.0

    def usage_of(self, lane: str, input_tokens: int, output_tokens: int, *,
                 cache_read: int = 0, cache_write: int = 0) -> Usage:
        """One call's usage, priced from the settings (``unpriced`` if the model has none);
        the input read from or written to the prompt cache at its own price."""
        provider, _, model = lane.partition(":")
        return Usage.of(input_tokens, output_tokens,
                        self.config.cost_usd(provider, model, input_tokens, output_tokens,
                                             cache_read, cache_write))

    def chain(self, job_type: str, first: str, *, explicit: bool) -> list[str]:
        """The lanes to try: the one asked for, then the job type's fallbacks (unless the
        caller named a model explicitly, in which case only that one)."""
        if explicit:
            return [first]
        return [first] + [lane for lane in self.config.fallbacks(job_type, exclude=first)
                          if lane.partition(":")[0] in self.providers.names()]


class JobLLM:
    """``ctx.llm``: the gateway bound to one running job."""

    def __init__(self, gateway: LLMGateway, ctx: JobContext[Any]) -> None:
        self.gw = gateway
        self.ctx = ctx

    def default_model(self, section: str | None = None) -> str:
        return self.gw.config.default_model(self.ctx.job_type, section)

    # -- public API ---------------------------------------------------------------------------
    def complete(self, messages: Sequence[Message | dict[str, str]], *, model: str | None = None,
                 section: str | None = None, max_output_tokens: int = 512,
                 temperature: float | None = None, timeout_s: float = 60.0,
                 json_output: bool = False, step: str = "call",
                 fallback: bool | None = None,
                 cache_prefix: bool = False) -> tuple[LLMResponse, CallRecord]:
        """One completion. With ``model`` named, only that lane is tried unless ``fallback``
        is True (then the job type's fallbacks follow it); without, the job type's model and
        its fallbacks. ``cache_prefix``: the system prompt is shared by many calls, so ask
        the provider to cache it where that must be asked (Anthropic). Returns the response
        and what the call cost."""
        msgs = tuple(m if isinstance(m, Message) else Message(m["role"], m["content"])
                     for m in messages)
        spec = model or self.default_model(section)
        first = self.gw.lane_of(spec)
        est_in = estimate_messages_tokens(msgs)
        content = cal.classify(m.content for m in msgs)

        def call(lane: str) -> LLMResponse:
            provider_name, _, model_name = lane.partition(":")
            provider = self.gw.providers.get(provider_name)
            req = LLMRequest(model=model_name, messages=msgs,
                             max_output_tokens=max_output_tokens, temperature=temperature,
                             timeout_s=timeout_s, json_output=json_output,
                             cache_prefix=cache_prefix)
            return provider.complete(req)

        def admitted() -> tuple[LLMResponse, CallRecord]:
            return self._admitted_call(
                first, explicit=model is not None if fallback is None else not fallback,
                step=step, est_in=est_in,
                est_out=max_output_tokens, timeout_s=timeout_s, call=call,
                usage=lambda r: (r.input_tokens, r.output_tokens), content=content)

        dedup, cache_ttl_s = self.gw.config.reuse_of(self.ctx.job_type)
        if self.gw.answers is None or not (dedup or cache_ttl_s):
            return admitted()
        scope = "*" if self.gw.config.reuse.shared_across_tenants else self.ctx.tenant
        key = reuse_key(scope, first, msgs, max_output_tokens=max_output_tokens,
                        temperature=temperature, json_output=json_output)
        return self._reusing(key, first, step=step, dedup=dedup, cache_ttl_s=cache_ttl_s,
                             lead_ttl_s=timeout_s + self.gw.policy.reservation_slack_s,
                             admitted=admitted)

    def embed(self, texts: Sequence[str], *, model: str | None = None,
              timeout_s: float = 60.0, step: str = "embed") -> tuple[list[list[float]],
                                                                      CallRecord]:
        spec = model or self.default_model()
        first = self.gw.lane_of(spec)
        vectors: list[list[float]] = []
        total: CallRecord | None = None
        size = self.gw.policy.embed_batch
        for i in range(0, len(texts), size):
            batch = list(texts[i:i + size])

            def call(lane: str, batch: list[str] = batch) -> EmbeddingResponse:
                provider_name, _, model_name = lane.partition(":")
                return self.gw.providers.embedder(provider_name).embed(
                    batch, model_name, timeout_s)

            resp, record = self._admitted_call(
                first, explicit=True, step=f"{step}-{i // size}",
                est_in=sum(estimate_tokens(t) for t in batch), est_out=0,
                timeout_s=timeout_s, call=call, usage=lambda r: (r.input_tokens, 0),
                content=cal.classify(batch))
            vectors.extend(resp.vectors)
            if total is None:
                total = record
            else:
                total.input_tokens += record.input_tokens
                total.cost_nanos += record.cost_nanos
                total.unpriced = total.unpriced or record.unpriced
                total.latency_s += record.latency_s
            self.ctx.progress(min(99, 100 * (i + len(batch)) / max(1, len(texts))),
                              f"Embedded {i + len(batch)}/{len(texts)} texts")
        assert total is not None
        return vectors, total

    # -- reuse (llm/reuse.py) -------------------------------------------------------------------
    def _reusing(self, key: str, first: str, *, step: str, dedup: bool,
                 cache_ttl_s: float | None, lead_ttl_s: float,
                 admitted: Callable[[], tuple[LLMResponse, CallRecord]]
                 ) -> tuple[LLMResponse, CallRecord]:
        """Answer from the cache, or from an identical call in flight, or call (leading the
        identical calls that arrive meanwhile). Sharing is advice: if the answer store fails,
        the call is simply made."""
        answers = self.gw.answers
        assert answers is not None
        try:
            if cache_ttl_s:
                hit = answers.cached(key)
                if hit is not None:
                    return self._reused(hit, "cache", step)
            token: str | None = None
            while dedup:
                led, token = answers.lead(key, lead_ttl_s)
                if led:
                    break
                if token is None:
                    continue  # the lead vanished between the two looks
                shared = self._follow(key, token, lead_ttl_s)
                if shared is not None:
                    return self._reused(shared, "inflight", step)
                token = None  # the leader failed or vanished: lead (or follow the next one)
        except (JobCancelled, LeaseLost, WorkerStopping):
            raise
        except Exception:
            log.warning("job %s: the shared answers are unavailable; calling", self.ctx.job_id,
                        exc_info=True)
            return admitted()
        answer: Answer | None = None
        try:
            resp, record = admitted()
            answer = Answer(text=resp.text, input_tokens=resp.input_tokens,
                            output_tokens=resp.output_tokens, model=resp.model,
                            provider=resp.provider, lane=record.lane,
                            cost_nanos=record.cost_nanos, unpriced=record.unpriced,
                            simulated=record.simulated)
            return resp, record
        finally:
            try:
                if answer is not None and cache_ttl_s:
                    answers.keep(key, answer, cache_ttl_s)
                if token is not None:
                    answers.publish(key, token, answer)  # None: followers take over
            except Exception:
                log.warning("job %s: sharing an answer failed", self.ctx.job_id,
                            exc_info=True)

    def _follow(self, key: str, token: str, lead_ttl_s: float) -> Answer | None:
        """Wait for the leader ``token``'s answer; None when it failed or its lead expired."""
        deadline = time.monotonic() + lead_ttl_s
        while time.monotonic() < deadline:
            self.ctx.check()
            answer, leading = self.gw.answers.answer_of(key, token)  # type: ignore[union-attr]
            if answer is not None:
                return answer
            if not leading:
                return None
            self.ctx.sleep(FOLLOW_POLL_S)
        return None

    def _reused(self, answer: Answer, how: str, step: str) -> tuple[LLMResponse, CallRecord]:
        """A shared answer: no provider call, no quota, no budget; the job pays nothing."""
        ctx = self.ctx
        saved = None if answer.unpriced else Usage(cost_nanos=answer.cost_nanos)
        metrics.reused_calls.labels(lane=answer.lane, how=how).inc()
        if saved is not None:
            metrics.saved_cost.labels(lane=answer.lane, tenant=ctx.tenant).inc(
                answer.cost_nanos / 1e9)
        if self.gw.spending is not None:
            self.gw.spending.note_reused(tenant=ctx.tenant, job_type=ctx.job_type,
                                         lane=answer.lane, input_tokens=answer.input_tokens,
                                         output_tokens=answer.output_tokens,
                                         cost_nanos=answer.cost_nanos)
        record = CallRecord(lane=answer.lane, provider=answer.provider, model=answer.model,
                            input_tokens=0, output_tokens=0, cost_nanos=0, latency_s=0.0,
                            simulated=answer.simulated, lanes_tried=[answer.lane],
                            reused=how)
        saved_usd = None if saved is None else saved.public_cost_usd()
        ctx.event("llm_call", {
            "lane": answer.lane, "model": f"{answer.provider}:{answer.model}", "step": step,
            "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "latency_ms": 0,
            "fallback": False, "lanes_tried": [answer.lane], "simulated": answer.simulated,
            "reused": how, "saved_input_tokens": answer.input_tokens,
            "saved_output_tokens": answer.output_tokens, "saved_cost_usd": saved_usd})
        log.info("llm_call", extra=job_fields(
            job_id=ctx.job_id, type=ctx.job_type, attempt=ctx.attempt, tenant=ctx.tenant,
            lane=answer.lane, reused=how, input_tokens=0, output_tokens=0))
        return answer.response(), record

    # -- the loop -------------------------------------------------------------------------------
    def _admitted_call(self, first: str, *, explicit: bool, step: str, est_in: int,
                       est_out: int, timeout_s: float, call: Callable[[str], T],
                       usage: Callable[[T], tuple[int, int]],
                       content: cal.ContentClass = "prose") -> tuple[T, CallRecord]:
        """``est_in`` is the raw chars/4 estimate; each lane reserves it as calibrated for
        ``content`` (see :mod:`tidegate.core.limits.calibration`)."""
        gw, ctx = self.gw, self.ctx
        raw_in = est_in
        lanes = gw.chain(ctx.job_type, first, explicit=explicit)
        tried: list[str] = []
        index = 0
        holder = f"{ctx.job_id}:{step}"
        while True:
            ctx.check()
            lane = lanes[index]
            if lane not in tried:
                tried.append(lane)
            limits = gw.ensure_configured(lane)
            est_in = self._calibrated_input(lane, content, raw_in)
            asked = time.monotonic()  # the wait runs from the limiter's answer
            adm = gw.limiter.acquire(lane, input_tokens=est_in, output_tokens=est_out,
                                     priority=ctx.priority, holder=holder,
                                     ttl_s=timeout_s + gw.policy.reservation_slack_s,
                                     limits=limits, tenant=ctx.tenant,
                                     weight=gw.weight_of(ctx.tenant))
            if not adm.granted:
                metrics.quota_waits.labels(lane=lane, reason=adm.reason).inc()
                if (adm.reason == "paused" and adm.wait_s > gw.policy.fallback_after_s
                        and index + 1 < len(lanes)):
                    log.info("job %s: lane %s paused %.0fs, falling back to %s", ctx.job_id,
                             lane, adm.wait_s, lanes[index + 1])
                    index += 1
                    continue
                self._wait_or_yield(lane, adm, asked)
                continue
            assert adm.reservation_id is not None
            hold = self._reserve_budget(lane, adm.reservation_id, holder, est_in, est_out,
                                        timeout_s)
            sent = time.monotonic()
            try:
                try:
                    result, latency = self._call_abandonable(
                        lane, adm.reservation_id, functools.partial(call, lane), hold)
                except BaseException:
                    if gw.spending is not None:
                        gw.spending.refund(hold)  # not made, or cut off: a late answer settles
                    raise
            except RateLimited as exc:
                gw.limiter.release(lane, adm.reservation_id)
                gw.limiter.observe(lane, exc.rate_limits, age_s=time.monotonic() - sent)
                until = gw.limiter.on_rate_limited(lane, exc.retry_after_s)
                metrics.provider_calls.labels(lane=lane, outcome="rate_limited").inc()
                log.warning("job %s: 429 on %s, lane paused until %.1f", ctx.job_id, lane,
                            until)
                continue  # waiting for quota is not a failed attempt
            except TransientError as exc:
                gw.limiter.release(lane, adm.reservation_id)
                metrics.provider_calls.labels(lane=lane, outcome="transient").inc()
                if index + 1 < len(lanes):
                    log.warning("job %s: %s on %s, trying %s", ctx.job_id, exc.code, lane,
                                lanes[index + 1])
                    index += 1
                    continue
                raise RetryLater(full_jitter(ctx.attempt, base_s=gw.policy.backoff_base_s,
                                             cap_s=gw.policy.backoff_cap_s),
                                 reason=f"{exc.code} on {lane}", error_code=exc.code,
                                 error_message=f"{lane}: {exc.message}") from None
            except ProviderError as exc:  # permanent, context too long
                gw.limiter.release(lane, adm.reservation_id)
                metrics.provider_calls.labels(lane=lane, outcome="permanent").inc()
                raise JobFailed(exc.code, f"{lane}: {exc.message}") from None
            except (JobCancelled, LeaseLost, WorkerStopping):
                raise  # _call_abandonable cut the call off and freed its reservation
            except Exception:
                gw.limiter.release(lane, adm.reservation_id)
                raise
            metrics.provider_calls.labels(lane=lane, outcome="ok").inc()
            in_tok, out_tok = usage(result)
            self._learn(lane, content, result, raw_in, in_tok, est_out, out_tok)
            provider_name, _, model_name = lane.partition(":")
            cache_read, cache_write = _cache_of(result)
            spent = gw.usage_of(lane, in_tok, out_tok, cache_read=cache_read,
                                cache_write=cache_write)
            ctx.add_usage(spent)
            if gw.spending is not None:
                gw.spending.settle(hold, tenant=ctx.tenant, job_type=ctx.job_type, lane=lane,
                                   usage=spent)
            metrics.tokens.labels(lane=lane, kind="input").inc(in_tok)
            metrics.tokens.labels(lane=lane, kind="output").inc(out_tok)
            metrics.llm_tokens.labels(lane=lane, tenant=ctx.tenant, direction="input").inc(in_tok)
            metrics.llm_tokens.labels(lane=lane, tenant=ctx.tenant,
                                      direction="output").inc(out_tok)
            if not spent.unpriced:
                metrics.llm_cost.labels(lane=lane, tenant=ctx.tenant).inc(spent.cost_nanos / 1e9)
            log.info("llm_call", extra=job_fields(
                job_id=ctx.job_id, type=ctx.job_type, attempt=ctx.attempt, tenant=ctx.tenant,
                lane=lane, input_tokens=in_tok, output_tokens=out_tok,
                cost_usd=None if spent.unpriced else spent.cost_nanos / 1e9,
                latency_ms=round(latency * 1000)))
            record = CallRecord(lane=lane, provider=provider_name, model=model_name,
                                input_tokens=in_tok, output_tokens=out_tok,
                                cost_nanos=spent.cost_nanos, unpriced=spent.unpriced,
                                latency_s=latency,
                                simulated=bool(getattr(result, "simulated", False)),
                                lanes_tried=tried, cache_read_tokens=cache_read,
                                cache_write_tokens=cache_write)
            ctx.event("llm_call", {
                "lane": lane, "model": f"{provider_name}:{model_name}", "step": step,
                "input_tokens": in_tok, "output_tokens": out_tok,
                "cost_usd": record.cost_usd, "latency_ms": round(latency * 1000),
                # Which lane of the chain answered: not the first one asked for.
                "fallback": lane != lanes[0], "lanes_tried": list(tried),
                "simulated": record.simulated,
                **({"cache_read_tokens": cache_read, "cache_write_tokens": cache_write}
                   if cache_read or cache_write else {})})
            return result, record

    def _calibrated_input(self, lane: str, content: cal.ContentClass, raw: int) -> int:
        """The input tokens to reserve: the raw estimate times what the lane learned (or the
        conservative prior). A calibration store that fails costs accuracy, not the call."""
        store = self.gw.calibration
        if store is None:
            return raw
        try:
            learned = store.ratio(lane, "input", content)
        except Exception:
            log.warning("calibration of %s unavailable; reserving the prior", lane,
                        exc_info=True)
            learned = None
        return cal.calibrated(raw, cal.reserve_factor(learned, "input", content))

    def _learn(self, lane: str, content: cal.ContentClass, result: Any, raw_in: int,
               in_tok: int, est_out: int, out_tok: int) -> None:
        """Teach the lane what its provider counted, when the provider reported usage."""
        store = self.gw.calibration
        if store is None or not getattr(result, "usage_reported", True):
            return
        try:
            store.learn(lane, "input", content, estimate=raw_in, actual=in_tok)
            if est_out:
                store.learn(lane, "output", content, estimate=est_out, actual=out_tok)
        except Exception:  # advice only: the settle already charged the real usage
            log.warning("learning the calibration of %s failed", lane, exc_info=True)

    def _reserve_budget(self, lane: str, rid: str, holder: str, est_in: int, est_out: int,
                        timeout_s: float) -> Hold | None:
        """Reserve the call's estimate against the tenant's budgets. A refusal frees the
        lane's reservation and fails the job (JobFailed budget_exceeded): the call is not
        made."""
        gw = self.gw
        if gw.spending is None:
            return None
        est = gw.usage_of(lane, est_in, est_out)
        try:
            return gw.spending.reserve(self.ctx.tenant, holder=holder,
                                       tokens=est_in + est_out, nanos=est.cost_nanos,
                                       ttl_s=timeout_s + gw.policy.reservation_slack_s)
        except BaseException:
            gw.limiter.release(lane, rid)
            raise

    def _wait_or_yield(self, lane: str, adm: Admission, asked: float) -> None:
        """Sleep a short wait in place; give the worker slot back for a long one. ``asked``:
        when (``time.monotonic()``) the limiter was asked; the wait runs from then."""
        policy = self.gw.policy
        left = adm.wait_s - (time.monotonic() - asked)
        detail = {"lane": lane, "wait_s": round(adm.wait_s, 3), "reason": adm.reason}
        if adm.wait_s <= policy.short_wait_s:
            # Short waits come in bursts under load: one event a second tells the story.
            self.ctx.event("quota_wait", detail, min_interval_s=1.0)
            self.ctx.sleep(max(0.01, left))
            return
        self.ctx.event("quota_wait", detail)
        # Sent again ahead of the turn; waiting for it is not an attempt, and the limiter
        # keeps the job's rank (a live waiter) until it is back.
        raise RetryLater(requeue_delay(adm.wait_s, policy),
                         reason=f"waiting for quota on {lane} ({adm.reason})",
                         counts_as_attempt=False, error_code="waiting_for_quota",
                         error_message=f"lane {lane} is at its {adm.reason} limit",
                         decided_at=asked)

    def _call_abandonable(self, lane: str, rid: str, fn: Callable[[], T],
                          hold: Hold | None = None) -> tuple[T, float]:
        """Run the provider call in a helper thread. When the job stops waiting for it
        (cancel, shutdown, lost lease, time limit), cut the HTTP request off and free the
        reservation at once; should the call return anyway, its usage is added late."""
        gw, ctx = self.gw, self.ctx
        started = time.monotonic()
        handle = abort.CallHandle()
        # In a copy of the job's context, so that the call's log lines name the job.
        future: Future[T] = gw._pool.submit(contextvars.copy_context().run, abort.run, handle,
                                            fn)
        try:
            while True:
                try:
                    result = future.result(timeout=gw.policy.poll_s)
                    break
                except TimeoutError:
                    if future.done():  # the call itself raised TimeoutError
                        raise
                    if ctx.interrupted:
                        ctx.check()
        except BaseException as exc:
            if not (future.done() and not future.cancelled() and future.exception() is exc):
                self._abandon(lane, rid, handle, future, hold)  # we stopped waiting
            raise
        latency = time.monotonic() - started
        in_tok, out_tok = _usage_of(result)
        gw.limiter.settle(lane, rid, input_tokens=in_tok, output_tokens=out_tok)
        info = getattr(result, "rate_limits", None)
        if info is not None:
            # The provider counted when the request arrived, a call's latency ago.
            gw.limiter.observe(lane, info, age_s=latency)
        return result, latency

    def _abandon(self, lane: str, rid: str, handle: abort.CallHandle,
                 future: Future[Any], hold: Hold | None = None) -> None:
        if future.done() and not future.cancelled() and future.exception() is None:
            self._late(lane, rid, future, hold)  # it answered just as we gave up: billed
            return
        future.cancel()  # not started yet: never sent
        handle.abort()  # in flight: cut off, so it stops being generated and billed
        self.gw.limiter.release(lane, rid)  # its quota is free for others now
        future.add_done_callback(functools.partial(self._late, lane, rid, hold=hold))

    def _late(self, lane: str, rid: str, future: Future[Any], hold: Hold | None = None) -> None:
        """An abandoned call returned: if it produced an answer, the provider bills it, so
        its usage goes on the job (whatever its status now) and on the lane."""
        try:
            if future.cancelled() or future.exception() is not None:
                self.gw.limiter.release(lane, rid)  # a no-op when released already
                return
            in_tok, out_tok = _usage_of(future.result())
            self.gw.limiter.settle(lane, rid, input_tokens=in_tok, output_tokens=out_tok)
            cache_read, cache_write = _cache_of(future.result())
            spent = self.gw.usage_of(lane, in_tok, out_tok, cache_read=cache_read,
                                     cache_write=cache_write)
            self.ctx.add_late_usage(spent)
            if self.gw.spending is not None:  # billed: it counts against the budget too
                self.gw.spending.settle(hold, tenant=self.ctx.tenant,
                                        job_type=self.ctx.job_type, lane=lane, usage=spent)
            log.info("job %s: an abandoned call on %s returned late: %d+%d tokens",
                     self.ctx.job_id, lane, in_tok, out_tok)
        except Exception:  # best effort: the reservation's TTL frees it anyway
            log.warning("job %s: recording a late call on %s failed", self.ctx.job_id, lane,
                        exc_info=True)


def requeue_delay(wait_s: float, policy: GatewayPolicy) -> float:
    """How long after the limiter's answer a job that gave its slot back is sent again:
    halfway through a long wait (it asks again), else its wait less the lead, never so early
    that what is left exceeds an in-place wait."""
    if wait_s > policy.recheck_over_s:
        return wait_s / 2
    lead = min(policy.requeue_lead_s, policy.short_wait_s)
    return max(0.0, wait_s - lead)


def _usage_of(result: Any) -> tuple[int, int]:
    return int(getattr(result, "input_tokens", 0)), int(getattr(result, "output_tokens", 0))


def _cache_of(result: Any) -> tuple[int, int]:
    """(input tokens read from, written to the provider's prompt cache)."""
    return (int(getattr(result, "cache_read_tokens", 0) or 0),
            int(getattr(result, "cache_write_tokens", 0) or 0))
