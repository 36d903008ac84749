"""Keys of shared state built from user input: one tenant's data never lands under another's key
(real Redis)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis

from tidegate.adapters.redis_keys import join_key
from tidegate.jobs.chat import ChatInput, _history, _remember


def _ctx(r: redis.Redis, tenant: str, conversation: str, job_id: str) -> SimpleNamespace:
    return SimpleNamespace(services={"redis": r}, tenant=tenant, job_id=job_id,
                           input=ChatInput(message=f"I am {tenant}", conversation_id=conversation))


def test_colliding_tenant_and_conversation_keep_separate_histories(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    _remember(_ctx(r, "co:lab", "c1", "j1"), "reply to co:lab")
    _remember(_ctx(r, "co", "lab:c1", "j2"), "reply to co")
    first = _history(_ctx(r, "co:lab", "c1", "j3"))
    second = _history(_ctx(r, "co", "lab:c1", "j4"))
    assert [m["content"] for m in first] == ["I am co:lab", "reply to co:lab"]
    assert [m["content"] for m in second] == ["I am co", "reply to co"]


@pytest.mark.parametrize("a,b", [
    (("co:lab", "c1"), ("co", "lab:c1")),
    (("a%3Ab",), ("a:b",)),
    (("a", ""), ("a:",)),
    (("x{y}",), ("x", "y")),
])
def test_joined_keys_are_injective(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    assert join_key("tg:t", *a) != join_key("tg:t", *b)


def test_simple_components_keep_their_readable_form() -> None:
    # Existing conversations of tenants with plain names keep their key across the upgrade.
    assert join_key("tg:conv", "acme", "c-1.x_2") == "tg:conv:acme:c-1.x_2"
