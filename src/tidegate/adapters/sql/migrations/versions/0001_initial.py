"""Jobs, job events and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import BigId, JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tg_jobs",
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
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
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
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_tg_jobs_tenant_idempotency"),
    )
    op.create_index("ix_tg_jobs_tenant_created", "tg_jobs", ["tenant", "created_at", "id"])
    op.create_index("ix_tg_jobs_status_lease", "tg_jobs", ["status", "lease_expires_at"])
    op.create_index("ix_tg_jobs_status_finished", "tg_jobs", ["status", "finished_at"])
    op.create_table(
        "tg_job_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("detail", JSONType, nullable=False),
    )
    op.create_index("ix_tg_job_events_job", "tg_job_events", ["job_id", "id"])
    op.create_table(
        "tg_api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("tg_api_keys")
    op.drop_index("ix_tg_job_events_job", "tg_job_events")
    op.drop_table("tg_job_events")
    op.drop_table("tg_jobs")
