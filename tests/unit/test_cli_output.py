"""The CLI prints API and job text as text: brackets in it are not Rich markup."""

from __future__ import annotations

import pytest

from tidegate.cli.client import _print_result
from tidegate.cli.common import fail


def test_error_messages_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fail("operators add more under [models] allow in the LLM settings")
    assert "under [models] allow" in capsys.readouterr().err


def test_job_errors_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    _print_result({"job_id": "j1", "status": "failed", "attempts": 1, "result": None,
                   "error": {"code": "handler_error", "message": "KeyError: [bold]x[/]"},
                   "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0}})
    assert "KeyError: [bold]x[/]" in capsys.readouterr().out
