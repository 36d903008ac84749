"""Key scopes, expiry and last use; tenant limits and budgets; usage per tenant and day.

Keys made before scopes existed keep working: the install's first key (the one `tidegate up`
made, the oldest) becomes ``admin``, every other key ``submit`` (what they could do before,
on their own tenant's jobs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tg_api_keys") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False,
                                   server_default="submit"))
        batch.add_column(sa.Column("name", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("expires_at", UTCDateTime))
        batch.add_column(sa.Column("last_used_at", UTCDateTime))
        batch.add_column(sa.Column("last_used_ip", sa.String(64)))
        batch.add_column(sa.Column("rotated_from", sa.String(36)))
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_tg_api_keys_prefix", ["prefix"])
    op.execute("UPDATE tg_api_keys SET scope = 'admin' WHERE id = (SELECT id FROM tg_api_keys "
               "ORDER BY created_at, id LIMIT 1)")
    op.create_table(
        "tg_tenants",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("submit_rpm", sa.Integer),
        sa.Column("max_queued", sa.Integer),
        sa.Column("max_running", sa.Integer),
        sa.Column("max_streams", sa.Integer),
        sa.Column("priorities", sa.String(32)),
        sa.Column("daily_tokens", sa.BigInteger),
        sa.Column("monthly_tokens", sa.BigInteger),
        sa.Column("daily_nano_usd", sa.BigInteger),
        sa.Column("monthly_nano_usd", sa.BigInteger),
        sa.Column("weight", sa.Float),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "tg_usage",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("type", sa.String(100), primary_key=True),
        sa.Column("lane", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_nano_usd", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("tg_usage")
    op.drop_table("tg_tenants")
    with op.batch_alter_table("tg_api_keys") as batch:
        batch.drop_index("ix_tg_api_keys_prefix")
        for column in ("revision", "rotated_from", "last_used_ip", "last_used_at", "expires_at", "name",
                       "scope"):
            batch.drop_column(column)
