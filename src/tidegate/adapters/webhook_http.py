"""Sending one webhook request safely (the SSRF guard) and checking URLs when registered.

* https only, except in dev (``TIDEGATE_ENV=dev`` also allows http);
* the host is resolved once, and every address it resolves to must be public: private,
  loopback, link-local, shared (CGNAT), multicast, reserved and unspecified addresses are
  refused, and so are cloud metadata addresses (always, even with
  ``TIDEGATE_WEBHOOK_ALLOW_PRIVATE=1``, which lifts the rest for local development and tests);
* the request goes to the address that was checked (so a second lookup cannot swap it), with
  the original Host header and TLS server name; no redirects are followed; short timeouts; at
  most ``MAX_RESPONSE_BYTES`` of the answer are read.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..core.errors import InvalidRequest

MAX_RESPONSE_BYTES = 4096
MAX_URL = 2000

METADATA = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}
SHARED = ipaddress.ip_network("100.64.0.0/10")


class Refused(Exception):  # noqa: N818
    """The URL may not be called (scheme, or an address that is not public)."""


def check_url(url: str, *, allow_http: bool) -> str:
    """``url`` if it may be registered; InvalidRequest (422) saying why not."""
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise InvalidRequest(f"webhook.url: at most {MAX_URL} characters")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise InvalidRequest("webhook.url: must be https://" + (" or http://" if allow_http
                                                                 else " outside dev"))
    if not parts.hostname:
        raise InvalidRequest("webhook.url: has no host")
    if parts.username or parts.password:
        raise InvalidRequest("webhook.url: may not carry a user or password")
    try:
        _ = parts.port
    except ValueError:
        raise InvalidRequest("webhook.url: invalid port") from None
    return url


def blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return True
    if allow_private:
        return ip.is_multicast or ip.is_unspecified
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or ip in SHARED or not ip.is_global)


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The one address to connect to, after checking every address ``host`` has."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise Refused(f"{host} has no address")
    bad = [a for a in addresses if blocked(a, allow_private=allow_private)]
    if bad:
        raise Refused(f"{host} resolves to a non-public address ({bad[0]})")
    return str(addresses[0])


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *,
         allow_http: bool, allow_private: bool) -> Answer:
    """POST ``body`` to ``url`` under the guard; Refused, or httpx errors, or the answer."""
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise Refused(f"scheme {parts.scheme} not allowed")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = resolve(host, port, allow_private=allow_private)
    pinned_host = f"[{ip}]" if ":" in ip else ip
    netloc = f"{pinned_host}:{port}" if parts.port else pinned_host
    target = urlunsplit(parts._replace(netloc=netloc))
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    request = client.build_request("POST", target, content=body,
                                   headers={**headers, "Host": host_header,
                                            "Content-Type": "application/json",
                                            "User-Agent": "Tidegate-Webhooks"},
                                   extensions=extensions)
    response = client.send(request, stream=True, follow_redirects=False)
    try:
        read = b""
        for chunk in response.iter_raw():
            read += chunk
            if len(read) >= MAX_RESPONSE_BYTES:
                break
        return Answer(response.status_code, read[:MAX_RESPONSE_BYTES])
    finally:
        response.close()
