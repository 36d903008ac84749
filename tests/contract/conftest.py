"""What the contract tests of submit and worker writes share: a webhook store on the
``store`` fixture's database, and a way to add an endpoint to it."""

from __future__ import annotations

import pytest

from tidegate.adapters.sql.webhooks import WebhookStore
from tidegate.adapters.webhook_secrets import SecretBox


@pytest.fixture
def hooks(store) -> WebhookStore:
    box = SecretBox("contract-secret")
    store.seal = box.seal
    return WebhookStore(store.engine, box)


def endpoint(hooks: WebhookStore, kinds: list[str], tenant: str = "acme") -> str:
    return str(hooks.add_endpoint(tenant=tenant, url="http://127.0.0.1:9/h", kinds=kinds,
                                  secret="s")["id"])
