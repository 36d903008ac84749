"""The webhook signature scheme receivers rely on, and the SSRF guard's address rules."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from tidegate import webhooks
from tidegate.adapters.webhook_http import Refused, blocked, check_url, post, resolve
from tidegate.adapters.webhook_secrets import SecretBox
from tidegate.core.errors import InvalidRequest


def test_sign_then_verify_and_what_fails() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    body = b'{"kind":"succeeded"}'
    headers = webhooks.sign(secret, body, timestamp=1_000_000)
    t, v1 = headers["Tidegate-Signature"].split(",")
    assert t == "t=1000000" and v1 == "v1=" + webhooks.signature(secret, body, 1_000_000)
    webhooks.verify(secret, headers, body, now=1_000_100)
    webhooks.verify(secret, {"tidegate-signature": headers["Tidegate-Signature"]}, body,
                    now=1_000_100)  # header names in any case
    for bad_secret, bad_body, now in ((webhooks.new_secret(), body, 1_000_100),
                                      (secret, body + b" ", 1_000_100),
                                      (secret, body, 1_000_301)):  # too old: a replay
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(bad_secret, headers, bad_body, now=now)
    for header in ({}, {"Tidegate-Signature": "v1=abc"}, {"Tidegate-Signature": "t=x,v1=a"}):
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(secret, header, body, now=1_000_000)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    headers = webhooks.sign([new, old], b"{}", timestamp=5)
    assert headers["Tidegate-Signature"].count("v1=") == 2
    webhooks.verify(old, headers, b"{}", now=5)
    webhooks.verify(new, headers, b"{}", now=5)


def test_secrets_at_rest_are_encrypted_under_the_secret_key() -> None:
    box = SecretBox("k1")
    sealed = box.seal("whsec_abc")
    assert "whsec_abc" not in sealed and box.open(sealed) == "whsec_abc"
    assert SecretBox("k2").open(sealed) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                     "169.254.1.1", "169.254.169.254", "100.64.0.1", "::1",
                                     "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1",
                                     "0.0.0.0", "224.0.0.1"])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert blocked(ipaddress.ip_address(address), allow_private=False)


def test_allow_private_lifts_the_rule_but_never_for_metadata() -> None:
    assert not blocked(ipaddress.ip_address("127.0.0.1"), allow_private=True)
    assert not blocked(ipaddress.ip_address("10.0.0.1"), allow_private=True)
    assert blocked(ipaddress.ip_address("169.254.169.254"), allow_private=True)
    assert not blocked(ipaddress.ip_address("93.184.216.34"), allow_private=False)


def test_a_loopback_url_is_refused_before_any_connection() -> None:
    with pytest.raises(Refused, match="non-public"):
        resolve("localhost", 80, allow_private=False)
    with httpx.Client() as client, pytest.raises(Refused):
        post(client, "http://127.0.0.1:9/x", b"{}", {}, allow_http=True, allow_private=False)
    with httpx.Client() as client, pytest.raises(Refused, match="scheme"):
        post(client, "http://example.com/x", b"{}", {}, allow_http=False, allow_private=False)


def test_urls_are_checked_when_registered() -> None:
    assert check_url("https://example.com/h", allow_http=False)
    assert check_url("http://localhost:8080/h", allow_http=True)
    for url in ("http://example.com/h", "https://", "https://a:b@example.com/",
                "https://example.com:99999/", "x" * 3000):
        with pytest.raises(InvalidRequest):
            check_url(url, allow_http=False)


def test_prod_refuses_private_webhooks() -> None:
    from tidegate.config import Settings
    from tidegate.core.errors import ConfigurationError

    prod = {"env": "prod", "redis_url": "redis://r", "secret_key": "s3cret",
            "simulator": "off"}
    Settings(_env_file=None, **prod)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="WEBHOOK_ALLOW_PRIVATE"):
        Settings(_env_file=None, webhook_allow_private=True, **prod)  # type: ignore[call-arg]
