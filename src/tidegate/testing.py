"""Run job types in-process in tests, the way a worker runs them.

:class:`JobHarness` wires the real pieces: the runner (claim, lease heartbeat, retries with
backoff, cancellation, checkpoints, final conditional write), the LLM gateway (the limiter,
the fallback chain, usage and cost) and the job service (input validation at submit), over the
in-memory job store and limiter that ship in ``tidegate.core``. Only the provider is replaced:
by a :class:`ScriptedProvider` that answers exactly what the test says, or by the provider
simulator (``simulator=True``) behind the vendors' official SDKs.

Time between deliveries is virtual: a retry's backoff or a long quota wait advances the
harness's clock instead of sleeping, so a test of five retries takes milliseconds::

    from tidegate.testing import JobHarness, Reply, ScriptedProvider
    from tidegate.core.llm import TransientError

    openai = ScriptedProvider("openai", [TransientError("503"), Reply("a summary")])
    with JobHarness(providers=[openai], modules=["myapp.jobs"]) as h:
        job = h.run_job("summarize", {"text": "..."})
    assert job.status == "succeeded" and job.attempts == 2
"""

from __future__ import annotations

import importlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .core.errors import NotFound
from .core.limits import InMemoryLimiter, LimiterPolicy
from .core.llm import EmbeddingResponse, LLMRequest, LLMResponse, RateLimitInfo
from .core.memory import InMemoryDispatcher, InMemoryJobStore
from .core.models import Job, JobEvent, utcnow
from .core.registry import Registry
from .core.runner import Outcome, Runner, RunnerConfig
from .core.service import JobService
from .core.statuses import Status

__all__ = ["JobHarness", "Reply", "ScriptedProvider", "TooManyDeliveries"]

TENANT = "tests"


@dataclass(frozen=True, slots=True)
class Reply:
    """One exact answer of a :class:`ScriptedProvider`."""

    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 20
    vectors: list[list[float]] | None = None  # for embeddings; default: one [1.0, 0.0] a text


Step = Reply | str | BaseException | Callable[[LLMRequest], Any]


class ScriptedProvider:
    """A provider playing a script: each call takes the next entry. A :class:`Reply` or a
    string answers; an exception (``tidegate.core.llm.RateLimited``, ``TransientError``,
    ``PermanentError``, ...) is raised as the vendor's SDK error would be translated; a
    callable gets the request and returns one of those (or raises). With the script used up,
    ``default`` answers (None: the call fails the test with a clear AssertionError)."""

    simulated = True

    def __init__(self, name: str, script: Iterable[Step] = (), *,
                 default: Reply | str | None = None) -> None:
        self.name = name
        self.script: list[Step] = list(script)
        self.default = default
        self.requests: list[LLMRequest] = []  # every completion request, in order
        self.embedded: list[list[str]] = []  # every embeddings batch, in order
        self._lock = threading.Lock()

    def _next(self, what: object) -> Reply:
        with self._lock:
            step: Step | None = self.script.pop(0) if self.script else self.default
        if step is None:
            raise AssertionError(f"{self.name}: the script has no reply left for {what!r}")
        answer: Any = step
        if callable(answer) and not isinstance(answer, BaseException | Reply | str):
            answer = answer(what)
        if isinstance(answer, BaseException):
            if hasattr(answer, "provider") and not answer.provider:
                answer.provider = self.name
            raise answer
        if isinstance(answer, str):
            return Reply(answer)
        if not isinstance(answer, Reply):
            raise AssertionError(f"{self.name}: a script step returned {answer!r}, not a Reply")
        return answer

    def complete(self, req: LLMRequest) -> LLMResponse:
        self.requests.append(req)
        reply = self._next(req)
        return LLMResponse(text=reply.text, input_tokens=reply.input_tokens,
                           output_tokens=reply.output_tokens, model=req.model,
                           provider=self.name, latency_s=0.0, rate_limits=RateLimitInfo(),
                           simulated=True)

    def stream(self, req: LLMRequest) -> Any:
        from .providers.base import TextStream

        resp = self.complete(req)

        def gen() -> Any:
            yield resp.text
            return resp

        return TextStream(self.name, gen())

    def embed(self, texts: list[str], model: str, timeout_s: float = 60.0) -> EmbeddingResponse:
        self.embedded.append(list(texts))
        reply = self._next(texts)
        vectors = reply.vectors or [[1.0, 0.0] for _ in texts]
        return EmbeddingResponse(vectors=vectors, input_tokens=reply.input_tokens,
                                 model=model, provider=self.name, latency_s=0.0,
                                 simulated=True)


class TooManyDeliveries(AssertionError):
    """The job was still not finished after the harness's ``max_deliveries``."""


class _Clock:
    """Wall time plus what the harness skipped over (backoffs, long quota waits)."""

    def __init__(self) -> None:
        self.skipped_s = 0.0

    def now(self) -> datetime:
        return utcnow() + timedelta(seconds=self.skipped_s)

    def time(self) -> float:
        return time.time() + self.skipped_s


@dataclass
class Delivery:
    """One delivery of a job to the runner, and what the runner decided."""

    attempt: int
    outcome: str
    delay_s: float


@dataclass
class Run:
    """What :meth:`JobHarness.run` returns: the job row at the end, and how it got there."""

    job: Job
    deliveries: list[Delivery] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)

    # The fields tests look at most, straight from the row.
    @property
    def status(self) -> str:
        return self.job.status.value

    @property
    def result(self) -> Any:
        return self.job.result

    @property
    def error(self) -> dict[str, str] | None:
        return self.job.error

    @property
    def attempts(self) -> int:
        return self.job.attempts

    @property
    def checkpoint(self) -> dict[str, Any]:
        return self.job.checkpoint

    @property
    def progress(self) -> int:
        return self.job.progress

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


class JobHarness:
    """The runner, gateway and job service over the in-memory store and limiter.

    ``registry``: where the job types are (default: the process registry the
    ``@registry.job_type`` decorator fills, with the built-in types); ``modules``: modules to
    import first (as TIDEGATE_JOB_MODULES would). ``providers``: the fakes to call; with
    ``simulator=True`` the vendors' SDKs call the provider simulator, started in a thread.
    ``llm_settings``: TOML merged over the shipped LLM settings (aliases, lanes, fallbacks).
    """

    def __init__(self, *, registry: Registry | None = None, modules: Sequence[str] = (),
                 providers: Sequence[Any] = (), simulator: bool = False,
                 simulator_config: Any = None, llm_settings: str | None = None,
                 max_deliveries: int = 20, heartbeat_s: float = 0.05,
                 tenant: str = TENANT) -> None:
        from .jobs import load_builtin_jobs
        from .llm import GatewayPolicy, LLMGateway
        from .llm.reuse import MemoryAnswers
        from .llm_config import load_llm_config
        from .providers.registry import Providers, build_providers

        if registry is None:
            registry = load_builtin_jobs(",".join(modules))
        else:
            for module in modules:
                importlib.import_module(module)
        self.registry = registry
        self.tenant = tenant
        self.max_deliveries = max_deliveries
        self.clock = _Clock()
        self._stops: list[Callable[[], None]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="tidegate-harness-")
        path = None
        if llm_settings:
            path = Path(self._tmp.name) / "llm.toml"
            path.write_text(llm_settings)
        self.llm_config = load_llm_config(str(path) if path else None).with_job_defaults(
            registry.types())
        if simulator:
            from .providers.simulator import fast_test_config, run_in_thread

            url, stop = run_in_thread(simulator_config or fast_test_config())
            self._stops.append(stop)
            self.simulator_url: str | None = url
            self.providers = build_providers({}, simulator_url=url)
        else:
            self.simulator_url = None
            self.providers = Providers()
        for p in providers:
            self.providers.add(p)
        self.store = InMemoryJobStore(clock=self.clock.now)
        self.dispatcher = InMemoryDispatcher()
        self.limiter = InMemoryLimiter(self.clock.time, policy=LimiterPolicy(burst_s=60))
        # Waits longer than a moment are handed back to the harness, which skips them.
        # Shared answers (dedup, cache) on the harness's clock, so a cache's TTL can be
        # skipped like any wait.
        self.answers = MemoryAnswers(self.clock.time)
        self.gateway = LLMGateway(self.providers, self.limiter, self.llm_config,
                                  policy=GatewayPolicy(short_wait_s=0.2, fallback_after_s=2,
                                                       poll_s=0.02), answers=self.answers)
        self._stops.append(self.gateway.close)
        from .jobs.common import LLM_CONFIG

        self.service = JobService(self.store, self.dispatcher, registry,
                                  validation_context={LLM_CONFIG: self.llm_config})
        self.runner = Runner(self.store, registry, worker_id="harness",
                             config=RunnerConfig(lease_s=30, heartbeat_s=heartbeat_s),
                             services={"llm": self.gateway})

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self.runner.stopping.set()
        for stop in reversed(self._stops):
            stop()
        self._tmp.cleanup()

    def __enter__(self) -> JobHarness:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, type: str, input: Any = None, **kw: Any) -> Job:
        """Validate and store the job as the API would (``priority``, ``metadata``,
        ``idempotency_key``, ``deadline_s``); raises InvalidInput / UnknownJobType."""
        if hasattr(input, "model_dump"):
            input = input.model_dump(mode="json")
        job, _ = self.service.submit(tenant=self.tenant, type=type, input=input or {}, **kw)
        return job

    def deliver(self, job_id: str) -> Outcome:
        """One delivery: what a worker does when the broker hands it the job once."""
        return self.runner.run(job_id)

    def run(self, job_id: str) -> Run:
        """Deliver the job until it ends: after a retry, skip its backoff (virtual time) and
        deliver again. Raises TooManyDeliveries after ``max_deliveries``."""
        deliveries: list[Delivery] = []
        for _ in range(self.max_deliveries):
            outcome = self.deliver(job_id)
            job = self.get(job_id)
            deliveries.append(Delivery(job.attempts, outcome.kind, outcome.delay_s))
            if job.status.terminal:
                return Run(job, deliveries, list(self.store.events(job_id)))
            if outcome.kind == "retry":
                self.clock.skipped_s += outcome.delay_s + 0.001
            elif outcome.kind == "skipped" and job.status is not Status.RUNNING:
                self.clock.skipped_s += 1.0  # not due yet
        raise TooManyDeliveries(f"job {job_id} still {self.get(job_id).status.value} after "
                                f"{self.max_deliveries} deliveries: {deliveries}")

    def run_job(self, type: str, input: Any = None, **kw: Any) -> Run:
        """Submit, then :meth:`run` to the end."""
        return self.run(self.submit(type, input, **kw).id)

    def start(self, type: str, input: Any = None, **kw: Any) -> tuple[str, Future[Run]]:
        """Submit and run in a thread; returns ``(job_id, future)``, e.g. to :meth:`cancel`
        it while it runs."""
        job_id = self.submit(type, input, **kw).id
        future: Future[Run] = Future()

        def target() -> None:
            try:
                future.set_result(self.run(job_id))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=target, name=f"harness-{job_id[:8]}", daemon=True).start()
        return job_id, future

    def cancel(self, job_id: str) -> Job:
        """Request cancellation as ``DELETE /v1/jobs/{id}`` does; a running handler learns
        it at its next heartbeat and stops at its next progress, checkpoint or call."""
        return self.service.cancel(job_id, tenant=self.tenant)

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def wait_for(self, job_id: str, predicate: Callable[[Job], bool],
                 timeout_s: float = 10.0) -> Job:
        """Poll the row until ``predicate(job)`` (e.g. it reported some progress)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if predicate(job):
                return job
            time.sleep(0.01)
        raise AssertionError(f"job {job_id}: condition not met within {timeout_s}s")
