"""Settings, read from TIDEGATE_* environment variables and an optional .env file.

Built by the app, worker and CLI at start-up, never at import time.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .core.errors import ConfigurationError

DEFAULT_SECRET = "tidegate-insecure-dev-secret"


class Env(StrEnum):
    DEV = "dev"
    STAGE = "stage"
    PROD = "prod"


# First Redis database of each environment: broker = base, shared state = base+1,
# monitoring caches = base+2. The seeds used 0-2 (dev), 6-8 (stage), 9-11 (prod).
REDIS_DB_BASE = {Env.DEV: 0, Env.STAGE: 6, Env.PROD: 9}


def with_redis_db(url: str, db: int) -> str:
    """Set the database number of a redis:// URL unless the URL names one already."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or parts.path.strip("/"):
        return url
    return urlunsplit(parts._replace(path=f"/{db}"))


def with_redis_credentials(url: str, username: str | None, password: str | None) -> str:
    """Put a user and password into a redis:// URL that names none (secrets kept apart from
    the URL, e.g. in a Kubernetes Secret, need no percent-encoding by hand)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or password is None or parts.password:
        return url
    user = quote(username or parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_redis_tls(url: str, *, ca_file: Path | None, cert_file: Path | None,
                   key_file: Path | None, verify: str) -> str:
    """A rediss:// URL with the TLS options as query parameters, which redis-py passes to its
    SSL connection: every Redis client built from the URL verifies the same way. Options the
    URL already has win."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return url
    query = dict(parse_qsl(parts.query))
    wanted = {"ssl_cert_reqs": verify, "ssl_ca_certs": ca_file, "ssl_certfile": cert_file,
              "ssl_keyfile": key_file}
    for name, value in wanted.items():
        if value is not None and name not in query:
            query[name] = str(value)
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDEGATE_", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    env: Env = Env.DEV
    data_dir: Path = Field(default=Path(".tidegate"),
                           description="embedded Redis data, SQLite file, API key file")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    url: str | None = Field(default=None, description="where the CLI finds the API")
    api_key: str | None = Field(default=None, description="the CLI's API key")

    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    database_idle_in_transaction_s: float = Field(default=10.0, ge=0, description="PostgreSQL "
                                                  "ends a session idle inside a transaction "
                                                  "this long (a vanished client's row locks "
                                                  "go with it); 0: the server's setting")
    broker_url: str | None = Field(default=None, description="redis:// or amqp://; "
                                   "default: TIDEGATE_REDIS_URL, else the embedded Redis")
    redis_url: str | None = Field(default=None, description="shared state; default: embedded")
    redis_username: str | None = Field(default=None, description="Redis ACL user, for Redis "
                                       "URLs that name none")
    redis_password: SecretStr | None = Field(default=None, description="Redis password (of "
                                             "the ACL user), for Redis URLs that have none")
    tls_ca_file: Path | None = Field(default=None, description="CA bundle that signed the "
                                     "Redis and RabbitMQ servers' certificates (rediss://, "
                                     "amqps://); default: the system's")
    tls_cert_file: Path | None = Field(default=None, description="client certificate (PEM) "
                                       "for servers that ask for one")
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM)")
    tls_verify: Literal["required", "optional", "none"] = Field(
        default="required", description="check the servers' certificates (none: refused in "
        "prod)")
    broker_quorum_queues: bool = Field(default=False, description="RabbitMQ: declare the "
                                       "high/medium/low queues as quorum queues (replicated); "
                                       "on a new vhost, or after deleting the classic ones")

    auth: Literal["on", "off"] = "on"
    secret_key: str = DEFAULT_SECRET
    metrics_token: str | None = Field(default=None, description="if set, GET /metrics needs "
                                      "`Authorization: Bearer <this token>`")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    lease_s: float = Field(default=30.0, gt=1)
    heartbeat_s: float = Field(default=2.0, gt=0)
    # Below RabbitMQ's default consumer_timeout (1800 s) with the hard limit (+60 s) too.
    job_time_limit_s: int = Field(default=1500, ge=10)
    broker_consumer_timeout_s: int = Field(default=1800, ge=1, description="RabbitMQ's "
                                           "consumer_timeout, to warn when a job may outlive it")
    retry_backoff_base_s: float = Field(default=2.0, gt=0, description="retries wait a random "
                                        "time up to base * 2**(attempt-1), capped")
    retry_backoff_cap_s: float = Field(default=60.0, gt=0)
    max_quota_wait_s: float = Field(default=3600.0, gt=0, description="a job waiting this "
                                    "long for provider quota in a row fails (quota_timeout), "
                                    "unless its job type sets its own maximum")
    visibility_timeout_s: int = Field(default=7200, ge=60)
    broker_heartbeat_s: float = Field(default=10.0, ge=0, description="AMQP heartbeat: a "
                                      "broker connection whose peer is silent for two of "
                                      "these is dropped on both ends (0: no heartbeats)")
    worker_concurrency: int = Field(default=8, ge=1)
    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    worker_prefetch_multiplier: int = Field(default=1, ge=1, description="messages a worker "
                                            "holds per free slot (Celery's "
                                            "worker_prefetch_multiplier); 1 strands the "
                                            "fewest when a worker dies")
    worker_autoscale: str | None = Field(default=None, description="`MAX,MIN` processes: "
                                         "the prefork pool grows and shrinks with the load")
    worker_max_tasks_per_child: int | None = Field(default=None, ge=1, description="a "
                                                   "prefork child is replaced after this "
                                                   "many jobs")
    worker_max_memory_per_child_kb: int | None = Field(default=None, ge=1024, description=(
        "a prefork child is replaced after a job that leaves it above this resident memory"))
    flower_basic_auth: SecretStr | None = Field(default=None, description="`user:password` "
                                                "(comma-separated for several): Flower asks "
                                                "for it; required when Flower listens "
                                                "beyond loopback")
    shutdown_grace_s: float = Field(default=10.0, ge=0, description="a stopping worker lets "
                                    "running jobs finish this long, then hands them back")
    job_modules: str = Field(default="", description="comma-separated modules that register "
                             "your own job types, imported by the API and the workers")
    worker_metrics_port: int = Field(default=0, ge=0, le=65535, description="serve this "
                                     "worker's Prometheus metrics on this port (0: don't)")
    sweep_interval_s: float = Field(default=10.0, gt=0)
    dispatch_grace_s: float = Field(default=10.0, ge=0)
    redispatch_after_s: float = Field(default=600.0, gt=0, description="re-send a waiting "
                                      "job handed to a queue that has not moved for this "
                                      "long")
    redispatch_behind_s: float = Field(default=30.0, gt=0, description="re-send a waiting "
                                       "job once messages sent this long after its own were "
                                       "claimed from its queue (its message was lost)")
    retention_days: float = Field(default=7.0, gt=0)
    failed_retention_days: float = Field(default=30.0, gt=0)
    schedule_grace_s: float = Field(default=300.0, ge=30, description="a schedule's slot "
                                    "the scheduler reaches this long late still runs; older "
                                    "ones follow the schedule's `missed` (skip or once)")
    schedule_tenant: str = Field(default="default", description="the tenant of settings-file "
                                 "schedules that name none")
    queues_cache_s: float = Field(default=2.0, ge=0)
    log_format: Literal["text", "json"] = Field(default="text", description="`json`: one "
                                                "JSON object per line, for log shippers")

    events_poll_s: float = Field(default=1.0, gt=0, description="event streams read the "
                                 "table this often even without a Redis wake-up")
    stream_retry_ms: int = Field(default=2000, ge=100, description="the SSE `retry:` hint")
    openai_max_wait_s: float = Field(default=300.0, gt=0, description="the OpenAI-compatible "
                                     "endpoints answer 429 (with Retry-After) when a call "
                                     "has not been answered within this; a request may ask "
                                     "for less (or more) with `X-Tidegate-Max-Wait`")
    # Cheap: the process's key cache answers, so a revoked key's streams close within a second.
    stream_recheck_s: float = Field(default=1.0, gt=0, description="an open event stream "
                                    "checks its API key again this often")
    webhook_allow_private: bool = Field(default=False, description="let webhooks reach "
                                        "private, loopback and link-local addresses (local "
                                        "development and tests; refused in prod)")
    webhook_retry_base_s: float = Field(default=5.0, gt=0, description="first retry delay "
                                        "of a failed delivery; doubles each time")
    webhook_retry_cap_s: float = Field(default=3600.0, gt=0)
    webhook_give_up_s: float = Field(default=86400.0, gt=0, description="a delivery is "
                                     "retried this long after its event, then marked failed")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=30)
    webhook_poll_s: float = Field(default=1.0, gt=0, description="how often the scheduler "
                                  "looks for deliveries that are due")

    simulator: Literal["auto", "off"] = "auto"
    simulator_url: str | None = None
    simulator_port: int = Field(default=8400, ge=0, le=65535)
    llm_config: Path | None = Field(default=None, description="TOML: models, prices, limits")

    @model_validator(mode="after")
    def _prod_guards(self) -> Settings:
        if self.env is Env.PROD:
            problems = []
            if self.redis_url is None:
                problems.append("TIDEGATE_REDIS_URL is required (no embedded Redis in prod)")
            if self.secret_key == DEFAULT_SECRET:
                problems.append("TIDEGATE_SECRET_KEY must be set to a secret of your own")
            if self.simulator_url is not None or self.simulator != "off":
                problems.append("TIDEGATE_SIMULATOR=off is required (no simulator in prod)")
            if self.auth == "off":
                problems.append("TIDEGATE_AUTH=off is not allowed in prod")
            if self.webhook_allow_private:
                problems.append("TIDEGATE_WEBHOOK_ALLOW_PRIVATE is not allowed in prod")
            if self.tls_verify == "none":
                problems.append("TIDEGATE_TLS_VERIFY=none is not allowed in prod")
            if problems:
                raise ConfigurationError("refusing to start in prod: " + "; ".join(problems))
        return self

    # -- derived --------------------------------------------------------------------------
    @property
    def redis_db_base(self) -> int:
        return REDIS_DB_BASE[self.env]

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'tidegate.db'}"

    def _redis(self, url: str, db: int) -> str:
        """A Redis URL as every client should use it: its database, credentials and TLS."""
        password = self.redis_password.get_secret_value() if self.redis_password else None
        url = with_redis_credentials(with_redis_db(url, db), self.redis_username, password)
        return with_redis_tls(url, ca_file=self.tls_ca_file, cert_file=self.tls_cert_file,
                              key_file=self.tls_key_file, verify=self.tls_verify)

    def broker(self) -> str:
        url = self.broker_url or self.redis_url
        if url is None:
            raise ConfigurationError("no broker: set TIDEGATE_BROKER_URL or TIDEGATE_REDIS_URL, "
                                     "or run `tidegate up`, which starts an embedded Redis")
        # (TLS options reach the broker as Celery's broker_use_ssl, not in its URL)
        password = self.redis_password.get_secret_value() if self.redis_password else None
        return with_redis_credentials(with_redis_db(url, self.redis_db_base),
                                      self.redis_username, password)

    def state_redis(self) -> str:
        if self.redis_url is None:
            if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
                return self._redis(self.broker_url, self.redis_db_base + 1)
            raise ConfigurationError("no Redis for shared state: set TIDEGATE_REDIS_URL "
                                     "(needed beside RabbitMQ for rate limits and events)")
        return self._redis(self.redis_url, self.redis_db_base + 1)

    def cache_redis(self) -> str:
        base = self.redis_url or self.broker_url or ""
        return self._redis(base, self.redis_db_base + 2)

    @property
    def api_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "api_key"


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ConfigurationError:
        raise
    except Exception as exc:  # pydantic's ValidationError: say which variable is wrong
        raise ConfigurationError(f"invalid settings: {exc}") from None
