"""Job modules that fail to load stop the process with an error naming them: from an entry
point of an installed distribution, and from TIDEGATE_JOB_MODULES."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tidegate.core.errors import ConfigurationError
from tidegate.jobs import load_builtin_jobs


def fake_distribution(site: Path, module_source: str) -> None:
    """What pip leaves in site-packages for a package with a `tidegate.jobs` entry point."""
    (site / "broken_jobs.py").write_text(module_source)
    info = site / "broken_jobs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-jobs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tidegate.jobs]\nbroken = broken_jobs\n")


def test_a_failing_entry_point_names_its_module_and_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "import no_such_dependency_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError) as err:
        load_builtin_jobs()
    message = str(err.value)
    assert "'broken_jobs'" in message and "broken-jobs" in message
    assert "no_such_dependency_anywhere" in message and "tidegate.jobs" in message
    sys.modules.pop("broken_jobs", None)


def test_a_failing_job_module_names_itself() -> None:
    with pytest.raises(ConfigurationError, match="'no_such_module_xyz'.*TIDEGATE_JOB_MODULES"):
        load_builtin_jobs("tidegate.jobs.echo, no_such_module_xyz")
