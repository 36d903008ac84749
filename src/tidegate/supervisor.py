"""Runs child processes for `tidegate up`: prefixes their logs, restarts a crashed child with
backoff (and says so), and stops them all on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    tier: int = 1  # higher tiers stop first: apps before the Redis they hand jobs back to


class Supervisor:
    def __init__(self, *, out: IO[str] | None = None, grace_s: float = 20.0,
                 echo: Callable[[str], None] | None = None) -> None:
        self.children: list[Child] = []
        self.out = out or sys.stdout
        self.grace_s = grace_s
        self.stop_event = threading.Event()
        self._print_lock = threading.Lock()
        self._echo = echo
        self._width = 8

    def say(self, line: str) -> None:
        with self._print_lock:
            if self._echo:
                self._echo(line)
            else:
                print(line, file=self.out, flush=True)

    def add(self, name: str, argv: list[str], env: dict[str, str] | None = None, *,
            tier: int = 1) -> Child:
        child = Child(name, argv, env or {}, tier=tier)
        self.children.append(child)
        self._width = max(self._width, len(name))
        return child

    def start(self, child: Child) -> None:
        env = {**os.environ, **child.env, "PYTHONUNBUFFERED": "1"}
        child.proc = subprocess.Popen(child.argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        child.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(child, child.proc), daemon=True,
                         name=f"log-{child.name}").start()

    def _pump(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = f"{child.name:<{self._width}} |"
        for raw in iter(proc.stdout.readline, b""):
            self.say(f"{prefix} {raw.decode(errors='replace').rstrip()}")

    def handle_signals(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            self.stop_event.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)

    def run(self) -> None:
        """Watch the children until asked to stop; restart any that exit on their own."""
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            for child in self.children:
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    code = proc.returncode
                    child.proc = None
                    # Back off 1, 2, 4 ... 30 s; a child that ran a minute starts over at 1 s.
                    if now - child.started_at > 60:
                        child.restarts = 0
                    delay = min(30.0, 2.0 ** child.restarts)
                    child.restarts += 1
                    child.next_start = now + delay
                    self.say(f"{'tidegate':<{self._width}} | {child.name} exited with code "
                             f"{code}; restarting in {delay:.0f}s (restart #{child.restarts})")
                elif proc is None and child.next_start and now >= child.next_start:
                    child.next_start = 0.0
                    self.start(child)

    def stop_all(self) -> None:
        """SIGTERM the children tier by tier, SIGKILL what outlives the grace period."""
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            group = [c for c in self.children if c.tier == tier]
            for child in group:
                child.next_start = 0.0
                if child.proc and child.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            for child in group:
                if child.proc is None:
                    continue
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(f"{'tidegate':<{self._width}} | {child.name} did not stop in "
                             f"{self.grace_s:.0f}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.proc.pid, signal.SIGKILL)
                    child.proc.wait(timeout=5)
