"""One `tidegate up` (embedded Redis, SQLite, simulator, API, a worker) shared by the tests of
the client, the front door and the examples: they all run in one xdist group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Up, start_up, stop_up

from .proxy import BreakingProxy

REPO = Path(__file__).resolve().parents[2]

# A lane of one request a minute, for the front door's "not answered in time" 429.
LLM_SETTINGS = """
[lanes."openai:gpt-4.1"]
rpm = 1
"""


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    (tmp / "llm.toml").write_text(LLM_SETTINGS)
    # The guide's job type (examples/research_jobs.py) is loaded as a user's module would be.
    running = start_up(tmp, {"TIDEGATE_LLM_CONFIG": str(tmp / "llm.toml"),
                             "TIDEGATE_JOB_MODULES": "examples.research_jobs",
                             "PYTHONPATH": str(REPO)})
    try:
        yield running
    finally:
        stop_up(running)


@pytest.fixture
def proxy(up: Up) -> Iterator[BreakingProxy]:
    p = BreakingProxy(int(up.url.rsplit(":", 1)[1]))
    try:
        yield p
    finally:
        p.close()
