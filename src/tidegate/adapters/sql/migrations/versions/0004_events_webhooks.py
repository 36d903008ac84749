"""Replayable events (tenant, job type and status on each event) and the webhook outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import BigId, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tg_job_events") as batch:
        batch.add_column(sa.Column("tenant", sa.String(100)))
        batch.add_column(sa.Column("type", sa.String(100)))
        batch.add_column(sa.Column("status", sa.String(16)))
    # Older events: the job's tenant and type; the status each left is not known any more.
    op.execute("UPDATE tg_job_events SET tenant = (SELECT tenant FROM tg_jobs "
               "WHERE tg_jobs.id = tg_job_events.job_id), type = (SELECT type FROM tg_jobs "
               "WHERE tg_jobs.id = tg_job_events.job_id)")
    op.create_index("ix_tg_job_events_tenant", "tg_job_events", ["tenant", "id"])
    op.create_table(
        "tg_webhook_endpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("job_id", sa.String(36)),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kinds", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_until", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_index("ix_tg_webhook_endpoints_tenant", "tg_webhook_endpoints", ["tenant"])
    op.create_index("ix_tg_webhook_endpoints_job", "tg_webhook_endpoints", ["job_id"])
    op.create_table(
        "tg_webhook_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_attempt_at", UTCDateTime),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("response_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("event_id", "endpoint_id", name="uq_tg_webhook_deliveries_event"),
    )
    op.create_index("ix_tg_webhook_deliveries_due", "tg_webhook_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index("ix_tg_webhook_deliveries_job", "tg_webhook_deliveries", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("tg_webhook_deliveries")
    op.drop_table("tg_webhook_endpoints")
    op.drop_index("ix_tg_job_events_tenant", "tg_job_events")
    with op.batch_alter_table("tg_job_events") as batch:
        batch.drop_column("status")
        batch.drop_column("type")
        batch.drop_column("tenant")
