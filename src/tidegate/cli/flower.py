"""`tidegate flower`: Celery's monitoring UI against Tidegate's broker, never open beyond
loopback without a password."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from .common import fail, settings_or_exit

# Flower's own ways of asking who you are (read by Flower from its environment).
FLOWER_AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name, or "" (every address)
        return False


def basic_auth_credentials(value: str) -> list[str]:
    """``user:password[,user:password]`` checked: every entry has both parts."""
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries or any(":" not in e or not e.split(":", 1)[0] or not e.split(":", 1)[1]
                          for e in entries):
        raise ValueError("TIDEGATE_FLOWER_BASIC_AUTH wants user:password "
                         "(comma-separated for several)")
    return entries


def flower(port: Annotated[int, typer.Option(help="Flower's port")] = 5555,
           address: Annotated[str, typer.Option(
               help="address to listen on; beyond loopback (0.0.0.0 in a container) it needs "
               "TIDEGATE_FLOWER_BASIC_AUTH (or Flower's own FLOWER_AUTH OAuth settings)")]
           = "127.0.0.1",
           url_prefix: Annotated[str, typer.Option(
               help="serve under this path (behind a proxy), e.g. flower")] = "") -> None:
    """Run Flower, Celery's monitoring UI, against Tidegate's broker. Each task shows its job's
    type and tenant (in the kwargs column; search `kwargs:tenant=acme`)."""
    from ..adapters.celery_app import create_celery

    settings = settings_or_exit()
    env = {}
    if settings.flower_basic_auth is not None:
        try:
            entries = basic_auth_credentials(settings.flower_basic_auth.get_secret_value())
        except ValueError as exc:
            fail(str(exc))
        # Through the environment, not argv: a command line is readable by every local user.
        env["FLOWER_BASIC_AUTH"] = ",".join(entries)
    protected = env or any(os.environ.get(name) for name in FLOWER_AUTH_ENV)
    if not protected and not is_loopback(address):
        fail(f"refusing to serve Flower on {address or 'every address'} without "
             "authentication: set TIDEGATE_FLOWER_BASIC_AUTH=user:password (or Flower's "
             "FLOWER_AUTH with its OAuth settings), or listen on 127.0.0.1")
    os.environ.update(env)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix.strip('/')}")
    create_celery(settings).start(argv)
