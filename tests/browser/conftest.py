"""One real Tidegate (`tidegate up`: embedded Redis, SQLite, simulator, a worker) and one
Chromium for the whole module; Debian's chromium, since browsers cannot be downloaded here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Up, start_up, stop_up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("TIDEGATE_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def tidegate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("dash-up")
    (tmp / "markers").mkdir()
    up = start_up(tmp, {
        "TIDEGATE_JOB_MODULES": "dash_jobs", "DASH_MARKER_DIR": str(tmp / "markers"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE / "jobmods"), str(ROOT),
                                                    os.environ.get("PYTHONPATH")])),
        "TIDEGATE_LOG_FORMAT": "json"})
    try:
        yield up
    finally:
        stop_up(up)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        from tests.services import require_services

        if require_services():
            pytest.fail(f"no chromium at {CHROMIUM}: `make browser` installs Debian's")
        pytest.skip(f"no chromium at {CHROMIUM} (`make browser` installs it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS
