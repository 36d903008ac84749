"""A job type's recent runs by an index (the ETA's durations).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tg_jobs_type_status_finished", "tg_jobs",
                    ["type", "status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tg_jobs_type_status_finished", table_name="tg_jobs")
