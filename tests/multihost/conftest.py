"""Fixtures of the multi-host test: the network (made and removed by the test) and its
processes. Each run has its own namespaces, so parallel runs never meet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.conftest import pytest_runtest_makereport  # noqa: F401  (rep_setup, rep_call)
from tests.fault.harness import ProcSet

from .fleet import HOSTS
from .netns import Network, can_build


@pytest.fixture
def network() -> Iterator[Network]:
    can_build()
    net = Network()
    try:
        yield net.build(HOSTS)
    finally:
        net.destroy()


@pytest.fixture
def procs(request: pytest.FixtureRequest, network: Network, tmp_path: Path) -> Iterator[ProcSet]:
    """Depends on the network, so the processes go before their namespaces do."""
    logs = tmp_path / "logs"
    logs.mkdir()
    ps = ProcSet(logs)
    yield ps
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if failed:
        print("\n" + ps.tails(3000))
    ps.close()
