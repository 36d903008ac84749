"""schemathesis against the running API's OpenAPI schema, with an admin key, every check:
no server error, every answer as the schema says (status, body, headers), no schema-valid
request refused and no schema-violating one accepted (schemathesis.toml says where a 422 for a
rule the schema cannot state is allowed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.keys import create_key

from .helpers import settings_for
from .live_api import live_api

# Its coverage phase walks every operation's boundaries: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_api_is_exactly_what_its_schema_says(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url, auth="on")
    engine = make_engine(settings.database)
    upgrade(engine)
    key, _ = create_key(SqlJobStore(engine), tenant="acme", secret=settings.secret_key,
                        scope="admin")
    engine.dispose()
    with live_api(settings) as base:
        run = subprocess.run(
            [ST, "--no-color", "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
             "--header", f"Authorization: Bearer {key}", "--checks", "all",
             "--max-examples", "10", "--generation-deterministic", "--request-timeout", "10",
             "--max-failures", "100"],
            capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else ""
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    print("\n" + summary)
