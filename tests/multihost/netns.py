"""A private network of hosts on this machine: Linux network namespaces on one bridge.

Layout: a "switch" namespace holds the bridge; every host is a namespace with one veth
(``eth0``) whose peer is a port of that bridge. The bridge is not in the root namespace and
nothing is routed out, so every run can use the same private subnet without meeting another
run's, and no traffic leaves loopback and these namespaces. Namespace names carry the test
process's PID: a run cleans up after itself (also on failure), and the next run removes what a
killed one left behind, never what a live one is using.

Cutting a host detaches its port from the bridge: its link stays up (no carrier loss, no
error on its sockets), its packets simply go nowhere, as when a switch port or a cable fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.fault.harness import missing

SUBNET = "10.231.0"
PREFIX = "tgmh"
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def can_build() -> None:
    """Skip locally (fail in CI) when namespaces cannot be made here."""
    if os.geteuid() != 0:
        missing("the multi-host test makes network namespaces: it needs root")
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            missing(f"the multi-host test needs `{tool}` (iproute2, util-linux)")


def remove_leftovers() -> None:
    """Delete namespaces of earlier runs whose test process is gone."""
    listed = _ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}-(\d+)-\w+-\w+)", listed, flags=re.M):
        ns, pid = name
        if not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", ns, check=False)


class Network:
    """The hosts of one test, by name; ``address(host)`` is its IPv4 address."""

    def __init__(self) -> None:
        self.run = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.switch = f"{self.run}-sw"
        self.hosts: dict[str, str] = {}  # host -> address
        self.made: list[str] = []
        self.cut_hosts: set[str] = set()

    def ns(self, host: str) -> str:
        return f"{self.run}-{host}"

    def address(self, host: str) -> str:
        return self.hosts[host]

    def _port(self, host: str) -> str:
        return f"p-{host}"[:15]

    def build(self, hosts: list[str]) -> Network:
        remove_leftovers()
        _ip("netns", "add", self.switch)
        self.made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(hosts, start=2):
            ns = self.ns(host)
            _ip("netns", "add", ns)
            self.made.append(ns)
            # Both ends are made inside their namespaces: no interface name in the root one.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth",
                "peer", "name", self._port(host), "netns", self.switch)
            _ip("-n", self.switch, "link", "set", self._port(host), "master", "br0", "up")
            address = f"{SUBNET}.{i}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.hosts[host] = address
        return self

    def wrap(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host``: in its namespace, under its own hostname (a UTS namespace,
        so a worker's id and node name say which host it is). Each step execs the next: the
        PID is the program's own."""
        return ["ip", "netns", "exec", self.ns(host), "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', host, *argv]

    def cut(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self._port(host), "nomaster")
        self.cut_hosts.add(host)

    def restore(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self._port(host), "master", "br0")
        self.cut_hosts.discard(host)

    def pids(self, host: str) -> list[int]:
        res = _ip("netns", "pids", self.ns(host), check=False)
        return [int(p) for p in res.stdout.split()]

    @contextlib.contextmanager
    def inside(self, host: str) -> Iterator[None]:
        """Run the calling thread in ``host``'s namespace (sockets it opens, and threads and
        processes it starts, belong there), and back in its own afterwards."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(NETNS_DIR / self.ns(host), os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.ns(host))
            try:
                yield
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(own)
            os.close(target)

    def destroy(self) -> None:
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []

