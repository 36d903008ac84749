"""Check a `tidegate ...` command line from a deploy file against the real CLI: every
subcommand and flag must exist and take the value given (parsed, nothing runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer.main

from tidegate.cli import app


def parse(argv: Sequence[str]) -> tuple[str, dict[str, object]]:
    """(the subcommand's path, its parsed parameters); raises the CLI's usage error."""
    command: Any = typer.main.get_command(app)
    args, path = list(argv), []
    while hasattr(command, "get_command"):  # a group: find the subcommand
        ctx = command.make_context("tidegate", list(args), resilient_parsing=False)
        name, *args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise ValueError(f"no command {name!r} in {' '.join(['tidegate', *path])}")
        path.append(name)
        command = sub
    ctx = command.make_context(" ".join(path), list(args), resilient_parsing=False)
    return " ".join(path), dict(ctx.params)
