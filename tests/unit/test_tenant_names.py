"""Tenant names: a safe alphabet, checked wherever a tenant comes into being."""

from __future__ import annotations

import pytest

from tidegate.core.keys import create_key
from tidegate.core.memory import InMemoryJobStore


@pytest.mark.parametrize("name", ["acme", "co.lab", "a", "t-1_x", "0" * 63])
def test_safe_names_are_accepted(name: str) -> None:
    _, record = create_key(InMemoryJobStore(), tenant=name, secret="s")
    assert record.tenant == name


@pytest.mark.parametrize("name", ["co:lab", "", "Acme", "-x", ".x", "a b", "a/b", "x" * 64,
                                  "é", "a\x00", "{lab}", "tg:conv"])
def test_unsafe_names_are_refused(name: str) -> None:
    store = InMemoryJobStore()
    with pytest.raises(ValueError, match="tenant"):
        create_key(store, tenant=name, secret="s")
    assert store.list_keys() == []
