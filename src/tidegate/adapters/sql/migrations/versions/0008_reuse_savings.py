"""What reused answers saved, per tenant, day, job type and lane (llm/reuse.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("reused_requests", "saved_input_tokens", "saved_output_tokens",
           "saved_cost_nano_usd")


def upgrade() -> None:
    with op.batch_alter_table("tg_usage") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("tg_usage") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
