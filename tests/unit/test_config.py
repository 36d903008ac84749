"""Settings: per-environment Redis databases, prod guards, secrets kept out of logs."""

from __future__ import annotations

import pytest

from tidegate.config import Settings, load_settings, redact, with_redis_db
from tidegate.core.errors import ConfigurationError


def make(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.mark.parametrize("env,broker,state,cache", [
    ("dev", 0, 1, 2), ("stage", 6, 7, 8), ("prod", 9, 10, 11)])
def test_each_environment_has_its_own_redis_databases(env, broker, state, cache) -> None:
    s = make(env=env, redis_url="redis://cache.internal:6379", secret_key="s3cret",
             simulator="off")
    assert s.broker() == f"redis://cache.internal:6379/{broker}"
    assert s.state_redis() == f"redis://cache.internal:6379/{state}"
    assert s.cache_redis() == f"redis://cache.internal:6379/{cache}"


def test_rabbitmq_broker_with_redis_beside_it() -> None:
    s = make(broker_url="amqp://u:p@rabbit//", redis_url="redis://r:6379")
    assert s.broker() == "amqp://u:p@rabbit//" and s.state_redis() == "redis://r:6379/1"
    with pytest.raises(ConfigurationError, match="TIDEGATE_REDIS_URL"):
        make(broker_url="amqp://u:p@rabbit//").state_redis()


def test_an_explicit_database_number_is_kept() -> None:
    assert with_redis_db("redis://h:1/5", 0) == "redis://h:1/5"
    assert with_redis_db("amqp://h//", 3) == "amqp://h//"


@pytest.mark.parametrize("overrides,problem", [
    ({}, "TIDEGATE_REDIS_URL is required"),
    ({"redis_url": "redis://r"}, "TIDEGATE_SECRET_KEY"),
    ({"redis_url": "redis://r", "secret_key": "x"}, "TIDEGATE_SIMULATOR=off"),
    ({"redis_url": "redis://r", "secret_key": "x", "simulator": "off", "auth": "off"},
     "AUTH=off"),
])
def test_prod_refuses_unsafe_settings(overrides, problem) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        make(env="prod", **overrides)


def test_prod_with_real_services_starts() -> None:
    s = make(env="prod", redis_url="redis://r", secret_key="x", simulator="off")
    assert not s.embedded_redis


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEGATE_PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="port"):
        load_settings()


def test_passwords_are_redacted() -> None:
    assert redact("postgresql://user:hunter2@db/x") == "postgresql://user:***@db/x"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_retry_backoff_and_quota_wait_reach_the_runner_and_the_gateway(monkeypatch) -> None:
    from tidegate.worker.runtime import gateway_policy, runner_config

    monkeypatch.setenv("TIDEGATE_RETRY_BACKOFF_BASE_S", "0.5")
    monkeypatch.setenv("TIDEGATE_RETRY_BACKOFF_CAP_S", "7")
    monkeypatch.setenv("TIDEGATE_MAX_QUOTA_WAIT_S", "90")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    cfg, policy = runner_config(s), gateway_policy(s)
    assert (cfg.backoff_base_s, cfg.backoff_cap_s, cfg.max_quota_wait_s) == (0.5, 7, 90)
    assert (policy.backoff_base_s, policy.backoff_cap_s) == (0.5, 7)
