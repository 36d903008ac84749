"""One in-process simulator per test module, reset to its start-up config after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tidegate.providers import Providers, build_providers
from tidegate.providers.simulator import fast_test_config, run_in_thread

from .helpers import Sim


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    url, stop = run_in_thread(fast_test_config())
    try:
        yield Sim(url)
    finally:
        stop()


@pytest.fixture(autouse=True)
def _fresh_sim(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


@pytest.fixture(scope="module")
def providers(sim: Sim) -> Providers:
    # Module-wide: building SDK clients costs ~0.1 s, and they hold no per-test state.
    return build_providers({}, simulator_url=sim.url)
