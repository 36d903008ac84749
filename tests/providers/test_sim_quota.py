"""The simulator's quotas: continuously refilled buckets, 429s with a correct retry-after."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from tidegate.providers.simulator.quota import QuotaStore

from .helpers import Sim


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_continuous_refill() -> None:
    clock = Clock()
    q = QuotaStore(rpm=60, tpm=0, clock=clock)
    assert all(q.admit("k", 10, 10).allowed for _ in range(60))
    refused = q.admit("k", 10, 10)
    assert not refused.allowed and refused.exhausted == "requests"
    assert refused.retry_after_s == pytest.approx(1.0)  # 60/min refills one per second
    clock.t += 0.5
    assert not q.admit("k", 10, 10).allowed  # half a request is not a request
    clock.t += 0.5
    assert q.admit("k", 10, 10).allowed  # no window boundary to wait for: it trickles back
    assert not q.admit("k", 10, 10).allowed
    clock.t += 10
    assert sum(q.admit("k", 10, 10).allowed for _ in range(20)) == 10


def test_token_bucket_and_refusal_charges_nothing() -> None:
    clock = Clock()
    q = QuotaStore(rpm=1000, tpm=600, clock=clock)
    assert q.admit("k", 200, 200).allowed  # 400 of 600
    refused = q.admit("k", 200, 200)
    assert not refused.allowed and refused.exhausted == "tokens"
    assert refused.retry_after_s == pytest.approx(200 / 10)  # 600/min = 10 tokens/s
    assert refused.bucket("requests").remaining == 999  # the refused call was not charged
    assert refused.bucket("tokens").remaining == 200


def test_request_larger_than_the_bucket_never_fits() -> None:
    q = QuotaStore(rpm=10, tpm=100, clock=Clock())
    refused = q.admit("k", 90, 50)
    assert not refused.allowed and refused.never_fits


def test_keys_are_independent_and_unlimited_means_no_bucket() -> None:
    clock = Clock()
    q = QuotaStore(rpm=1, tpm=0, clock=clock)
    assert q.admit("a", 1, 1).allowed and q.admit("b", 1, 1).allowed
    assert not q.admit("a", 1, 1).allowed
    free = QuotaStore(rpm=0, tpm=0, clock=clock)
    assert all(free.admit("a", 10**6, 10**6).allowed for _ in range(1000))
    assert free.peek("a") == ()


def test_input_and_output_buckets() -> None:
    q = QuotaStore(rpm=0, tpm=0, input_tpm=100, output_tpm=50, clock=Clock())
    assert q.admit("k", 60, 40).allowed
    refused = q.admit("k", 30, 20)
    assert refused.exhausted == "output_tokens"


def _chat(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "m", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 5})


def test_http_burst_over_rpm(sim: Sim) -> None:
    sim.configure(rpm=30)  # one request trickles back every two seconds
    with httpx.Client(base_url=sim.url) as client:
        burst = [_chat(client, "burst-key") for _ in range(36)]
        codes = [r.status_code for r in burst]
        # The bucket starts full, so the first 30 pass; a refill of one more during the burst is
        # possible on a slow machine, but the burst as a whole must overrun the quota.
        assert codes[:30] == [200] * 30
        assert codes.count(429) >= 5
        refused = [r for r in burst if r.status_code == 429][-1]
        exact = float(refused.headers["retry-after-ms"]) / 1000
        assert int(refused.headers["retry-after"]) == math.ceil(exact)
        assert 0 < exact <= 2.0
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-limit-requests"] == "30"
        body = refused.json()["error"]
        assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
        assert _chat(client, "another-key").status_code == 200  # quotas are per key
        time.sleep(exact)  # the advertised wait is enough: the refill is continuous
        assert _chat(client, "burst-key").status_code == 200
    stats = sim.stats()
    assert stats["total"]["rate_limited"] == codes.count(429)
    assert stats["total"]["ok"] == codes.count(200) + 2


def test_http_quota_per_model_or_per_key(sim: Sim) -> None:
    sim.configure(rpm=1)
    url = f"{sim.url}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    h = {"authorization": "Bearer scope-key"}
    assert httpx.post(url, headers=h, json={**body, "model": "a"}).status_code == 200
    assert httpx.post(url, headers=h, json={**body, "model": "b"}).status_code == 200
    sim.configure(quota_scope="key")
    assert httpx.post(url, headers=h, json={**body, "model": "a"}).status_code == 200
    assert httpx.post(url, headers=h, json={**body, "model": "b"}).status_code == 429


def test_anthropic_429_shape(sim: Sim) -> None:
    sim.configure(rpm=1, tpm=1000)
    h = {"x-api-key": "anthropic-burst", "anthropic-version": "2023-06-01"}
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    ok = httpx.post(f"{sim.url}/v1/messages", headers=h, json=body)
    assert ok.status_code == 200
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert ok.headers["anthropic-ratelimit-tokens-limit"] == "1000"
    assert ok.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    refused = httpx.post(f"{sim.url}/v1/messages", headers=h, json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 59 <= int(refused.headers["retry-after"]) <= 60
