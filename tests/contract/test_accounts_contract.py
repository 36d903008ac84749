"""The AccountStore port (keys, tenant settings, usage): one body, every store."""

from __future__ import annotations

from datetime import date, timedelta

from tidegate.core import keys as K
from tidegate.core.models import TenantSettings, Usage, utcnow


def test_keys_revoke_expire_touch_and_generation(store) -> None:
    g0 = store.keys_generation()
    plain, key = K.create_key(store, tenant="acme", secret="s", scope="read", name="ci")
    g1 = store.keys_generation()
    assert g1 != g0
    assert K.authenticate(store, plain, "s") == key
    assert store.keys_by_prefix(key.prefix[:8]) == [key]
    assert K.find_key(store, key.prefix).id == key.id
    store.touch_key(key.id, at=utcnow(), address="10.0.0.1")
    assert store.keys_generation() == g1  # use is not a change
    assert store.get_key(key.id).last_used_ip == "10.0.0.1"
    new_plain, new, old = K.rotate(store, key.prefix, secret="s", grace=timedelta(hours=1))
    assert (new.scope, new.tenant, new.name, new.rotated_from) == ("read", "acme", "ci", key.id)
    assert old.expires_at is not None and K.authenticate(store, plain, "s") is not None
    assert store.keys_generation() != g1
    assert not store.expire_key(key.id, at=utcnow() + timedelta(days=1))  # never later
    K.revoke(store, new.prefix)
    assert K.authenticate(store, new_plain, "s") is None
    assert not store.revoke_key(new.id, at=utcnow())
    assert [k.id for k in store.list_keys(tenant="acme")] == [key.id, new.id]
    assert store.list_keys(tenant="zeta") == []


def test_tenant_settings_round_trip(store) -> None:
    assert store.get_tenant("acme") is None
    s = TenantSettings(name="acme", submit_rpm=5, priorities=("medium", "low"),
                       daily_nano_usd=1_500_000_000, weight=2.0, updated_at=utcnow())
    store.put_tenant(s)
    store.put_tenant(TenantSettings(name="beta", max_running=1, updated_at=utcnow()))
    got = store.get_tenant("acme")
    assert (got.submit_rpm, got.priorities, got.daily_nano_usd, got.weight) == (
        5, ("medium", "low"), 1_500_000_000, 2.0)
    store.put_tenant(TenantSettings(name="acme", max_queued=3, updated_at=utcnow()))
    got = store.get_tenant("acme")
    assert (got.submit_rpm, got.max_queued) == (None, 3)  # a put replaces the row
    assert [t.name for t in store.list_tenants()] == ["acme", "beta"]


def test_usage_adds_up_and_groups(store) -> None:
    d1, d2 = date(2026, 12, 1), date(2026, 12, 2)
    for tenant, day, typ, lane, u in (
            ("acme", d1, "chat", "openai:a", Usage(10, 5, 100)),
            ("acme", d2, "chat", "openai:a", Usage(1, 2, 3)),
            ("acme", d2, "chat", "openai:a", Usage(1, 2, 3)),
            ("acme", d2, "report", "openai:b", Usage(7, 0, 9)),
            ("zeta", d2, "chat", "openai:a", Usage(100, 100, 100))):
        store.add_usage(tenant=tenant, day=day, type=typ, lane=lane, usage=u)
    assert store.usage_since("acme", d2) == Usage(9, 4, 15)
    assert store.usage_since("acme", d1) == Usage(19, 9, 115)
    rows = store.usage_report(tenant="acme", start=d1, end=d2, group_by=["day", "type"])
    assert [(r.group, r.requests, r.input_tokens) for r in rows] == [
        ({"day": "2026-12-01", "type": "chat"}, 1, 10),
        ({"day": "2026-12-02", "type": "chat"}, 2, 2),
        ({"day": "2026-12-02", "type": "report"}, 1, 7)]
    everyone = store.usage_report(tenant=None, start=d2, end=d2, group_by=[])
    assert [(r.requests, r.cost_nanos) for r in everyone] == [(4, 115)]
    assert store.usage_report(tenant="nobody", start=d1, end=d2, group_by=[]) == []


def test_reused_calls_add_up_apart_and_spend_nothing(store) -> None:
    day = date(2026, 12, 3)
    store.add_usage(tenant="acme", day=day, type="chat", lane="openai:a", usage=Usage(10, 5, 100))
    for _ in range(2):  # two calls answered by that one's answer
        store.add_usage(tenant="acme", day=day, type="chat", lane="openai:a", usage=Usage(),
                        requests=0, reused=1, saved=Usage(10, 5, 100))
    assert store.usage_since("acme", day) == Usage(10, 5, 100)  # budgets count spend only
    [row] = store.usage_report(tenant="acme", start=day, end=day, group_by=["lane"])
    assert (row.requests, row.input_tokens, row.cost_nanos) == (1, 10, 100)
    assert (row.reused_requests, row.saved) == (2, Usage(20, 10, 200))
