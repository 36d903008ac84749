"""What the service checks at submit for every caller, HTTP or not: storable text, and one
request per Idempotency-Key (the fingerprint covers every submit field)."""

from __future__ import annotations

import inspect

import pytest

from tidegate.core.cursors import cursor_key, decode_cursor, encode_cursor
from tidegate.core.errors import IdempotencyMismatch, InvalidCursor, InvalidRequest
from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.models import utcnow
from tidegate.core.service import _NOT_THE_REQUEST, JobService

from .fixtures import make_registry


@pytest.fixture
def service() -> JobService:
    return JobService(InMemoryJobStore(), InMemoryDispatcher(), make_registry([]), secret="s")


def test_unstorable_text_is_refused_for_non_http_callers(service: JobService) -> None:
    for kwargs, path in (({"metadata": {"a": ["\ud800"]}}, "metadata.a[0]"),
                         ({"input": {"n\x00": 1}}, "input"),
                         ({"idempotency_key": "k\x00"}, "idempotency_key"),
                         ({"metadata": {"f": float("nan")}}, "metadata.f")):
        with pytest.raises(InvalidRequest, match=r"^" + path.replace("[", r"\[")):
            service.submit(tenant="t", type="ok", **{"input": {}, **kwargs})
    assert service.store.list(tenant=None).jobs == []


def test_every_submit_parameter_is_in_the_fingerprint(service: JobService,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of submit() is in the fingerprint (a new one must be added), and varying one
    of them under one key is a mismatch."""
    import tidegate.core.service as service_module

    fingerprinted: list[dict] = []
    real = service_module.request_fingerprint
    monkeypatch.setattr(service_module, "request_fingerprint",
                        lambda request: fingerprinted.append(request) or real(request))
    params = {p for p in inspect.signature(JobService.submit).parameters
              if p not in _NOT_THE_REQUEST}
    base = {"type": "ok", "input": {"n": 1}, "priority": "low", "metadata": {"m": 1},
            "webhook": {"url": "https://example.com/a"}}
    variants = {"type": "boom", "input": {"n": 2}, "priority": "high", "metadata": {"m": 2},
                "webhook": {"url": "https://example.com/b"}}
    first, _ = service.submit(tenant="t", idempotency_key="k", **base)
    assert set(fingerprinted[0]) == params
    again, created = service.submit(tenant="t", idempotency_key="k", **base)
    assert again.id == first.id and not created
    for name, value in variants.items():
        with pytest.raises(IdempotencyMismatch):
            service.submit(tenant="t", idempotency_key="k", **{**base, name: value})
    other, created = service.submit(tenant="u", idempotency_key="k", **base)
    assert created and other.id != first.id


def test_cursor_round_trip_and_key_separation() -> None:
    key = cursor_key("secret")
    position = (utcnow(), "abc")
    assert decode_cursor(encode_cursor(position, key), key) == position
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor(position, key), cursor_key("another secret"))
    assert cursor_key("secret") != b"secret"
