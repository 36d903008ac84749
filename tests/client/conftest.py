"""One `tidegate up` (embedded Redis, SQLite, simulator, API, a worker) shared by the tests of
the client, the front door and the examples: they all run in one xdist group."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Up, start_up, stop_up

from .proxy import BreakingProxy

REPO = Path(__file__).resolve().parents[2]

# A lane of one request a minute, for the front door's "not answered in time" 429; and
# analyze_section's answers cached (test_reuse_e2e.py).
LLM_SETTINGS = """
[lanes."openai:gpt-4.1"]
rpm = 1

[jobs.analyze_section]
cache_ttl_s = 600
dedup = true
"""


def install_acme_jobs(target: Path) -> Path:
    """pip-install the package in acme_jobs_pkg/ (built with hatchling, as Tidegate is; no
    dependencies) into ``target``, as a user installs theirs beside Tidegate."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target),
                    str(Path(__file__).parent / "acme_jobs_pkg")],
                   check=True, capture_output=True, env=os.environ | {"PIP_NO_INPUT": "1"})
    return target


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    (tmp / "llm.toml").write_text(LLM_SETTINGS)
    site = install_acme_jobs(tmp / "site")
    # The guide's job type (examples/research_jobs.py) is loaded as a user's module would be,
    # and the installed acme-jobs package through its `tidegate.jobs` entry point.
    running = start_up(tmp, {"TIDEGATE_LLM_CONFIG": str(tmp / "llm.toml"),
                             "TIDEGATE_JOB_MODULES": "examples.research_jobs",
                             "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])})
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
