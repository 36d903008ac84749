"""The caller's deadline on each job, and a job type's recent runs by an index (the ETA).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tg_jobs") as batch:
        # Submit's deadline_s / deadline_at, as planners read it (expires_at enforces it).
        batch.add_column(sa.Column("deadline_at", UTCDateTime))
    # Until now the only deadline a job could carry was its expiry: it was the caller's.
    op.execute("UPDATE tg_jobs SET deadline_at = expires_at WHERE expires_at IS NOT NULL")
    op.create_index("ix_tg_jobs_type_status_finished", "tg_jobs",
                    ["type", "status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tg_jobs_type_status_finished", table_name="tg_jobs")
    with op.batch_alter_table("tg_jobs") as batch:
        batch.drop_column("deadline_at")
