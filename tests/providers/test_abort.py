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
