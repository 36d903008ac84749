"""Scopes, durations, tenant settings from their public form, error summaries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidegate.core.errors import InvalidInput, public_summary
from tidegate.core.keys import Scope, allows, parse_duration
from tidegate.core.tenants import TenantGate, settings_from_public, settings_to_public


def test_scopes_nest() -> None:
    assert allows("admin", Scope.READ) and allows("submit", Scope.SUBMIT)
    assert not allows("read", Scope.SUBMIT) and not allows("submit", Scope.ADMIN)
    assert not allows("root", Scope.READ)


@pytest.mark.parametrize("text,expected", [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)),
                                           ("90m", timedelta(minutes=90)), ("45", timedelta(seconds=45)),
                                           ("1.5s", timedelta(seconds=1.5)), ("2w", timedelta(weeks=2))])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "0d", "-1h", "3y", "soon"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(bad)


def test_tenant_settings_from_and_to_their_public_form() -> None:
    s = settings_from_public("acme", {"daily_usd": 1.25, "priorities": "low,medium,low",
                                      "max_running": 2})
    assert (s.daily_nano_usd, s.priorities, s.max_running) == (1_250_000_000, ("low", "medium"), 2)
    cleared = settings_from_public("acme", {"daily_usd": None}, s)
    assert cleared.daily_nano_usd is None and cleared.max_running == 2
    assert settings_to_public(s)["daily_usd"] == 1.25
    assert settings_from_public("acme", {"weight": 2}).weight == 2.0
    for bad in ({"priorities": "urgent"}, {"weight": 0}, {"weight": 1e6}, {"submit_rpm": True},
                {"monthly_usd": 1.7976931348623157e308}, {"monthly_usd": float("nan")},
                {"max_running": 2**31}, {"daily_tokens": 2**63},
                {"max_queued": 1.5}, {"colour": 1}):
        with pytest.raises(InvalidInput):
            settings_from_public("acme", bad)
    with pytest.raises(InvalidInput):
        settings_from_public("Not A Tenant", {})


def test_a_tenants_weight_defaults_to_one_and_survives_a_database_blink() -> None:
    from tidegate.core.errors import Unavailable
    from tidegate.core.memory import InMemoryJobStore

    store = InMemoryJobStore()
    gate = TenantGate(store, cache_s=0)
    assert gate.weight("acme") == 1.0  # no settings
    store.put_tenant(settings_from_public("acme", {"max_queued": 5}))
    assert gate.weight("acme") == 1.0  # settings without a weight
    store.put_tenant(settings_from_public("acme", {"weight": 3}))
    assert gate.weight("acme") == 3.0

    def down(name: str) -> None:
        raise Unavailable("database down")

    store.get_tenant = down  # type: ignore[method-assign,assignment]
    assert gate.weight("acme") == 3.0  # the last settings read still hold
    assert gate.weight("never-read") == 1.0


def test_error_summaries_keep_the_class_and_drop_where_things_are() -> None:
    exc = OSError("cannot open /var/lib/tidegate/x.db on db1.prod.internal:5432 "
                  "(https://10.0.0.7/api)")
    summary = public_summary(exc)
    assert summary.startswith("OSError: cannot open <path> on <host>")
    for leak in ("/var/lib", "db1.prod", "5432", "10.0.0.7"):
        assert leak not in summary
    assert public_summary(KeyError("name")) == "KeyError: 'name'"
    assert len(public_summary(ValueError("x" * 5000))) <= 300
