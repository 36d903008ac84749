"""Helpers shared by the CLI commands: settings, logging, error exits."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from ..config import Settings, load_settings
from ..core.errors import ConfigurationError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    # Messages quote the API and the settings (`[models] allow`): text, not Rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise SystemExit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        fail(exc.message)


def setup_logging(settings: Settings, level: str = "INFO") -> None:
    from .. import logs

    logs.configure(settings.log_format, level)
