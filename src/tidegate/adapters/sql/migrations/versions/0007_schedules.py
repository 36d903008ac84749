"""Schedules and their runs (one per schedule and slot); the schedule a job came from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import JSONType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tg_jobs", sa.Column("schedule", sa.String(100)))
    op.create_table(
        "tg_schedules",
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
        sa.Column("cursor", UTCDateTime),
        sa.Column("last_run_at", UTCDateTime),
        sa.Column("last_slot", UTCDateTime),
        sa.Column("last_job_id", sa.String(36)),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("tenant", "name", name="uq_tg_schedules_tenant_name"),
    )
    op.create_table(
        "tg_schedule_runs",
        sa.Column("schedule_id", sa.String(36), primary_key=True),
        sa.Column("slot", UTCDateTime, primary_key=True),
        sa.Column("job_id", sa.String(36)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tg_schedule_runs")
    op.drop_table("tg_schedules")
    with op.batch_alter_table("tg_jobs") as batch:
        batch.drop_column("schedule")
