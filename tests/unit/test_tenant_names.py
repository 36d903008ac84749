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


def test_keys_create_refuses_an_unsafe_tenant(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tidegate.adapters.sql import SqlJobStore, make_engine
    from tidegate.adapters.sql.migrate import upgrade
    from tidegate.cli import app

    monkeypatch.chdir(tmp_path)  # no .env from the worktree
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(tmp_path))
    engine = make_engine(f"sqlite:///{tmp_path / 'tidegate.db'}")
    upgrade(engine)
    refused = CliRunner().invoke(app, ["keys", "create", "--tenant", "co:lab"])
    assert refused.exit_code != 0 and "invalid tenant name" in refused.output
    made = CliRunner().invoke(app, ["keys", "create", "--tenant", "co.lab"])
    assert made.exit_code == 0, made.output
    assert [k.tenant for k in SqlJobStore(engine).list_keys()] == ["co.lab"]
    engine.dispose()
