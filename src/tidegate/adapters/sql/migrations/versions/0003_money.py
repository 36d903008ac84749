"""Money as exact integers: nano-USD cost columns, the unpriced flag and late usage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG_ZERO = {"nullable": False, "server_default": "0"}


def upgrade() -> None:
    with op.batch_alter_table("tg_jobs") as batch:
        batch.add_column(sa.Column("cost_nano_usd", sa.BigInteger, **_BIG_ZERO))
        batch.add_column(sa.Column("unpriced", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("late_input_tokens", sa.BigInteger, **_BIG_ZERO))
        batch.add_column(sa.Column("late_output_tokens", sa.BigInteger, **_BIG_ZERO))
        batch.add_column(sa.Column("late_cost_nano_usd", sa.BigInteger, **_BIG_ZERO))
    # The old float costs, to the nearest nano-dollar (all they were ever precise to).
    op.execute("UPDATE tg_jobs SET cost_nano_usd = CAST(ROUND(cost_usd * 1000000000) AS BIGINT)")
    with op.batch_alter_table("tg_jobs") as batch:
        batch.drop_column("cost_usd")


def downgrade() -> None:
    with op.batch_alter_table("tg_jobs") as batch:
        batch.add_column(sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"))
    op.execute("UPDATE tg_jobs SET cost_usd = cost_nano_usd / 1000000000.0")
    with op.batch_alter_table("tg_jobs") as batch:
        batch.drop_column("late_cost_nano_usd")
        batch.drop_column("late_output_tokens")
        batch.drop_column("late_input_tokens")
        batch.drop_column("unpriced")
        batch.drop_column("cost_nano_usd")
