"""Static security checks of CI: bandit over the source (no high-severity finding), and
pip-audit over the installed dependencies where it can reach its vulnerability service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_bandit_finds_nothing_of_high_severity() -> None:
    run = subprocess.run([str(BIN / "bandit"), "-r", str(ROOT / "src"), "-f", "json", "-q",
                          "--severity-level", "high"],
                         capture_output=True, text=True, timeout=600)
    report = json.loads(run.stdout)
    high = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
            for r in report["results"] if r["issue_severity"] == "HIGH"]
    assert not high, "\n".join(high)
    assert not report["errors"], report["errors"]  # every file was read
    assert report["metrics"]["_totals"]["loc"] > 10_000  # it scanned the package


def test_pip_audit_of_the_installed_dependencies() -> None:
    # pip-audit asks a vulnerability service (PyPI's or OSV's) about every installed package:
    # it has no offline database. Opt in where that service is reachable.
    if os.environ.get("TIDEGATE_TEST_PIP_AUDIT", "") in ("", "0", "false"):
        pytest.skip("pip-audit needs its online vulnerability service (no offline mode); "
                    "set TIDEGATE_TEST_PIP_AUDIT=1 where it is reachable")
    run = subprocess.run([str(BIN / "pip-audit"), "--progress-spinner", "off",
                          "--skip-editable", "--format", "json"],
                         capture_output=True, text=True, timeout=900)
    if run.returncode and not run.stdout.strip().startswith("{"):
        pytest.skip(f"pip-audit could not run: {run.stderr.strip()[-500:]}")
    found = [f"{d['name']} {d['version']}: {v['id']}"
             for d in json.loads(run.stdout)["dependencies"] for v in d.get("vulns", [])]
    assert not found, "\n".join(found)
