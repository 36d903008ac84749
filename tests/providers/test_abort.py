"""A cancelled job's provider call is cut off at once, on every provider's real SDK client."""

from __future__ import annotations

import threading
import time

import pytest

from tidegate.core.llm import ProviderError
from tidegate.providers import Providers, abort

from .helpers import Sim, make_request


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_abort_cuts_off_a_hanging_call(sim: Sim, providers: Providers, name: str) -> None:
    sim.configure(hang_rate=1.0, hang_s=30)
    handle = abort.CallHandle()
    outcome: list[BaseException | object] = []

    def call() -> None:
        try:
            outcome.append(abort.run(handle, lambda: providers.get(name).complete(
                make_request(timeout_s=30))))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while sim.stats()["total"]["hangs"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # until the server is holding the request
    time.sleep(0.1)
    handle.abort()
    thread.join(timeout=1.0)
    assert not thread.is_alive(), "the call was still blocked 1 s after abort"
    assert isinstance(outcome[0], ProviderError), outcome  # a connection error, classified
    sim.configure(hang_rate=0.0)
    # The pooled client still works for the next call.
    assert providers.get(name).complete(make_request()).text


def test_a_call_without_a_handle_is_untouched(sim: Sim, providers: Providers) -> None:
    other = abort.CallHandle()
    other.abort()  # someone else's aborted call must not affect this one
    assert providers.get("openai").complete(make_request()).text


def _job_context(store, gateway):

    from pydantic import BaseModel

    from tidegate.core.context import JobContext
    from tidegate.core.models import Job, new_job_id
    from tidegate.core.statuses import Priority

    class Nothing(BaseModel):
        pass

    job, _ = store.create(Job(id=new_job_id(), tenant="t", type="chat", priority=Priority.HIGH,
                              input={}))
    store.claim(job.id, owner="w", lease_s=30)
    return JobContext(job_id=job.id, tenant="t", job_type="chat", attempt=1, max_attempts=3,
                      input=Nothing(), store=store, checkpoint={}, services={"llm": gateway},
                      priority="high")


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest",
                                   "gemini:gemini-2.0-flash"])
def test_cancelling_a_job_closes_its_connection_and_frees_its_quota(
        sim: Sim, providers: Providers, model: str) -> None:
    from tidegate.core.errors import JobCancelled
    from tidegate.core.limits import InMemoryLimiter
    from tidegate.core.memory import InMemoryJobStore
    from tidegate.llm import GatewayPolicy, LLMGateway
    from tidegate.llm_config import load_llm_config

    sim.configure(hang_rate=1.0, hang_s=30)
    limiter = InMemoryLimiter(time.time)
    gateway = LLMGateway(providers, limiter, load_llm_config(None),
                         policy=GatewayPolicy(poll_s=0.02))
    store = InMemoryJobStore()
    ctx = _job_context(store, gateway)

    def cancel_once_the_server_holds_the_request() -> None:
        deadline = time.monotonic() + 10
        while sim.stats()["total"]["hangs"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx.cancel_event.set()  # what the heartbeat does on DELETE /v1/jobs/{id}

    threading.Thread(target=cancel_once_the_server_holds_the_request, daemon=True).start()
    try:
        with pytest.raises(JobCancelled):
            ctx.llm.complete([{"role": "user", "content": "hello"}], model=model, timeout_s=30)
        cancelled_at = time.monotonic()
        assert limiter.snapshot(model).in_flight == 0  # released at once, not at the timeout
        while sim.stats()["total"]["hangs_disconnected"] < 1:
            assert time.monotonic() - cancelled_at < 1.0, "the connection was left open"
            time.sleep(0.02)
        assert ctx.usage.input_tokens == 0  # nothing answered, nothing billed
    finally:
        gateway.close()
