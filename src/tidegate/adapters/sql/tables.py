"""Table definitions. Migrations under ``migrations/versions`` must match these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC; always returns aware datetimes (SQLite drops the zone on its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

WAITING_UNDISPATCHED = "status IN ('queued', 'retrying') AND dispatched_at IS NULL"
WAITING_DISPATCHED = "status IN ('queued', 'retrying') AND dispatched_at IS NOT NULL"

jobs = sa.Table(
    "tg_jobs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("input", JSONType, nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("progress", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("result", JSONType),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    # Money in whole nano-dollars (1e-9 USD): exact sums, no float drift.
    sa.Column("cost_nano_usd", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("checkpoint", JSONType, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("not_before", UTCDateTime),
    sa.Column("dispatched_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("request_fingerprint", sa.String(64)),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("quota_wait_since", UTCDateTime),
    # A call's model had no price: cost_nano_usd is a lower bound, the API shows no cost.
    sa.Column("unpriced", sa.Boolean, nullable=False, server_default=sa.false()),
    # The part of the usage above from calls that returned after the job stopped waiting.
    sa.Column("late_input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("late_output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("late_cost_nano_usd", sa.BigInteger, nullable=False, server_default="0"),
    # The schedule (of the job's tenant) that created the job.
    sa.Column("schedule", sa.String(100)),
    # The caller's deadline (migration 0009); expires_at enforces it.
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_tg_jobs_tenant_idempotency"),
    sa.Index("ix_tg_jobs_tenant_created", "tenant", "created_at", "id"),
    sa.Index("ix_tg_jobs_status_lease", "status", "lease_expires_at"),
    sa.Index("ix_tg_jobs_status_finished", "status", "finished_at"),
    # A job type's recent runs, newest first (the ETA's durations, migration 0009).
    sa.Index("ix_tg_jobs_type_status_finished", "type", "status", "finished_at"),
    # The sweep's looks at waiting jobs (migration 0006): never handed to the broker, and
    # handed over to a queue before a time (one range per queue). Partial, so a million
    # finished rows are not in them.
    sa.Index("ix_tg_jobs_undispatched", "updated_at",
             postgresql_where=sa.text(WAITING_UNDISPATCHED),
             sqlite_where=sa.text(WAITING_UNDISPATCHED)),
    sa.Index("ix_tg_jobs_waiting_dispatched", "priority", "dispatched_at",
             postgresql_where=sa.text(WAITING_DISPATCHED),
             sqlite_where=sa.text(WAITING_DISPATCHED)),
)

# Jobs by tenant and status, kept by database triggers on tg_jobs (migration 0006), so that
# the queue and metrics views never count a million rows. On PostgreSQL a transition appends a
# delta row (appends never wait on one another, so concurrent transitions cannot deadlock on a
# shared counter) and the sweep folds the deltas into tg_job_counts; a count is both summed.
# SQLite has one writer at a time: its triggers update tg_job_counts directly.
job_counts = sa.Table(
    "tg_job_counts", metadata,
    sa.Column("tenant", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

job_count_deltas = sa.Table(
    "tg_job_count_deltas", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("delta", sa.BigInteger, nullable=False),
)

job_events = sa.Table(
    "tg_job_events", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("detail", JSONType, nullable=False),
    # Copied from the job when the event is written: the tenant stream reads events alone,
    # and ``status`` is the job's status right after this event.
    sa.Column("tenant", sa.String(100)),
    sa.Column("type", sa.String(100)),
    sa.Column("status", sa.String(16)),
    sa.Index("ix_tg_job_events_job", "job_id", "id"),
    sa.Index("ix_tg_job_events_tenant", "tenant", "id"),
)

# A tenant's default endpoints (job_id NULL) and the endpoint of one job's own webhook.
webhook_endpoints = sa.Table(
    "tg_webhook_endpoints", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("job_id", sa.String(36)),
    sa.Column("url", sa.Text, nullable=False),
    # "*" or ",kind,kind," so that one LIKE matches a kind on every database.
    sa.Column("kinds", sa.Text, nullable=False),
    # Encrypted with a key derived from TIDEGATE_SECRET_KEY (adapters/webhook_secrets.py).
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("previous_secret", sa.Text),
    sa.Column("previous_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Index("ix_tg_webhook_endpoints_tenant", "tenant"),
    sa.Index("ix_tg_webhook_endpoints_job", "job_id"),
)

# The outbox: one row per (event, endpoint), written in the event's own transaction.
webhook_deliveries = sa.Table(
    "tg_webhook_deliveries", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.String(36), nullable=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("response_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_tg_webhook_deliveries_event"),
    sa.Index("ix_tg_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_tg_webhook_deliveries_job", "job_id", "id"),
)

api_keys = sa.Table(
    "tg_api_keys", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    # admin | submit | read (core.keys.Scope). Keys made before scopes: the first is admin.
    sa.Column("scope", sa.String(16), nullable=False, server_default="submit"),
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("last_used_ip", sa.String(64)),
    # The key this one replaced (rotation); that key stays valid until its expires_at.
    sa.Column("rotated_from", sa.String(36)),
    # +1 on every change but last use: API processes poll the table's sum to drop their
    # caches (a counter, not a time: hosts whose clocks disagree still see every change).
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_tg_api_keys_prefix", "prefix"),
)

# Limits and budgets per tenant; a tenant without a row (or a NULL field) has no such limit.
tenants = sa.Table(
    "tg_tenants", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("submit_rpm", sa.Integer),
    sa.Column("max_queued", sa.Integer),
    sa.Column("max_running", sa.Integer),
    sa.Column("max_streams", sa.Integer),
    sa.Column("priorities", sa.String(32)),  # comma-separated allowed priorities
    sa.Column("daily_tokens", sa.BigInteger),
    sa.Column("monthly_tokens", sa.BigInteger),
    sa.Column("daily_nano_usd", sa.BigInteger),
    sa.Column("monthly_nano_usd", sa.BigInteger),
    sa.Column("weight", sa.Float),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# What providers billed, per tenant, UTC day, job type and lane: the truth budgets are
# rebuilt from when Redis loses its counters, and what /v1/usage reports.
usage = sa.Table(
    "tg_usage", metadata,
    sa.Column("tenant", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("type", sa.String(100), primary_key=True),
    sa.Column("lane", sa.String(200), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_nano_usd", sa.BigInteger, nullable=False, server_default="0"),
    # Calls answered by another call's answer (cache, in-flight dedup) and what they saved.
    sa.Column("reused_requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("saved_input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("saved_output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("saved_cost_nano_usd", sa.BigInteger, nullable=False, server_default="0"),
)

# Periodic jobs (core/schedules.py): from the API, or from the settings file (source).
schedules = sa.Table(
    "tg_schedules", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(100), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("input", JSONType, nullable=False),
    sa.Column("cron", sa.String(200)),
    sa.Column("every_s", sa.Integer),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("priority", sa.String(8)),
    sa.Column("missed", sa.String(8), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # The latest slot handled (run, refused or skipped); the scheduler starts after it.
    sa.Column("cursor", UTCDateTime),
    sa.Column("last_run_at", UTCDateTime),
    sa.Column("last_slot", UTCDateTime),
    sa.Column("last_job_id", sa.String(36)),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("tenant", "name", name="uq_tg_schedules_tenant_name"),
)

# One row per slot a schedule ran (or was refused at): the unique key that makes each slot
# run once, whichever scheduler gets there, however often.
schedule_runs = sa.Table(
    "tg_schedule_runs", metadata,
    sa.Column("schedule_id", sa.String(36), primary_key=True),
    sa.Column("slot", UTCDateTime, primary_key=True),
    sa.Column("job_id", sa.String(36)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
