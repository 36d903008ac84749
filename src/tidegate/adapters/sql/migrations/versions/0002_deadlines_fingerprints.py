"""Job deadlines, quota-wait tracking and idempotency fingerprints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tg_jobs") as batch:
        # SHA-256 of the submit request; a reused Idempotency-Key with another body is refused.
        batch.add_column(sa.Column("request_fingerprint", sa.String(64)))
        # The job fails `expired` if it has not finished by then (submit's deadline_s).
        batch.add_column(sa.Column("expires_at", UTCDateTime))
        # When the job's current run of quota waits began; bounded by the type's max wait.
        batch.add_column(sa.Column("quota_wait_since", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("tg_jobs") as batch:
        batch.drop_column("quota_wait_since")
        batch.drop_column("expires_at")
        batch.drop_column("request_fingerprint")
