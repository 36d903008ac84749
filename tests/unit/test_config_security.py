"""Redis credentials and TLS options reach every Redis URL Tidegate builds; the broker gets
Celery's broker_use_ssl; quorum queues change the queues' declaration."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tidegate.adapters.celery_app import broker_tls, create_celery
from tidegate.config import Settings, redact
from tidegate.core.errors import ConfigurationError


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_credentials_from_settings_are_encoded_and_never_override_the_url() -> None:
    s = settings(redis_url="redis://cache.internal:6379", redis_username="tg",
                 redis_password="p@ss/w:rd")
    parts = urlsplit(s.state_redis())
    assert (parts.username, parts.password, parts.path) == ("tg", "p%40ss%2Fw%3Ard", "/1")
    assert "p%40ss" not in redact(s.state_redis())
    assert urlsplit(s.broker()).password == "p%40ss%2Fw%3Ard"
    own = settings(redis_url="redis://me:mine@h:6379", redis_password="other")
    assert urlsplit(own.state_redis()).password == "mine"
    amqp = settings(broker_url="amqp://u:p@rabbit//", redis_url="redis://h",
                    redis_password="x")
    assert amqp.broker() == "amqp://u:p@rabbit//"


def test_tls_options_go_into_rediss_urls_only(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = settings(redis_url="rediss://h:6380?ssl_cert_reqs=optional", tls_ca_file=ca,
                 tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "k.pem")
    query = parse_qs(urlsplit(s.state_redis()).query)
    assert query["ssl_cert_reqs"] == ["optional"]  # the URL's own option wins
    assert query["ssl_ca_certs"] == [str(ca)] and query["ssl_keyfile"] == [str(tmp_path / "k.pem")]
    assert "ssl_ca_certs" not in s.broker()  # (kombu takes broker_use_ssl instead)
    options = broker_tls(s, s.broker())
    assert options is not None and options["ssl_cert_reqs"] is ssl.CERT_REQUIRED
    assert options["ssl_ca_certs"] == str(ca)
    plain = settings(redis_url="redis://h", tls_ca_file=ca)
    assert "ssl_" not in plain.state_redis() and broker_tls(plain, plain.broker()) is None
    amqps = settings(broker_url="amqps://u:p@r:5671//", redis_url="redis://h",
                     tls_verify="none")
    assert broker_tls(amqps, amqps.broker()) == {"cert_reqs": ssl.CERT_NONE}


def test_prod_refuses_unverified_tls() -> None:
    with pytest.raises(ConfigurationError, match="TLS_VERIFY"):
        settings(env="prod", redis_url="rediss://h", secret_key="s" * 32, simulator="off",
                 tls_verify="none")


def test_quorum_queues_on_rabbitmq_only() -> None:
    quorum = create_celery(settings(broker_url="amqp://u:p@r//", redis_url="redis://h",
                                    broker_quorum_queues=True))
    assert {q.queue_arguments["x-queue-type"] for q in quorum.conf.task_queues} == {"quorum"}
    assert {q.exchange.type for q in quorum.conf.task_queues} == {"topic"}
    on_redis = create_celery(settings(redis_url="redis://h", broker_quorum_queues=True))
    assert all(not q.queue_arguments for q in on_redis.conf.task_queues)
    assert {q.exchange.name for q in on_redis.conf.task_queues} == {"tidegate"}
