"""Jobs by tenant and status, kept by triggers, and partial indexes for the sweep's looks at
waiting jobs. With them `/v1/queues`, `/metrics` and the tenant limits read a few rows instead
of counting every job (a seq scan of a million rows took 500 ms).

PostgreSQL: inserts and deletes are counted per statement (a purge of 10,000 rows appends a
few delta rows, not 10,000), a status change per row; every trigger only appends to
tg_job_count_deltas, which the sweep folds into tg_job_counts. SQLite: row triggers update
tg_job_counts directly (one writer at a time, nothing to deadlock). The counts of the jobs
already there are taken in the same transaction that creates the triggers; on PostgreSQL the
triggers' lock on tg_jobs holds writers off until it commits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from tidegate.adapters.sql.tables import WAITING_DISPATCHED, WAITING_UNDISPATCHED, BigId

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PG_FUNCTIONS = {
    "tg_jobs_count_insert": """
        INSERT INTO tg_job_count_deltas (tenant, status, delta)
        SELECT tenant, status, count(*) FROM tg_new_rows GROUP BY tenant, status;""",
    "tg_jobs_count_delete": """
        INSERT INTO tg_job_count_deltas (tenant, status, delta)
        SELECT tenant, status, -count(*) FROM tg_old_rows GROUP BY tenant, status;""",
    "tg_jobs_count_update": """
        INSERT INTO tg_job_count_deltas (tenant, status, delta)
        VALUES (OLD.tenant, OLD.status, -1), (NEW.tenant, NEW.status, 1);""",
}
PG_TRIGGERS = [
    "CREATE TRIGGER tg_jobs_count_insert AFTER INSERT ON tg_jobs "
    "REFERENCING NEW TABLE AS tg_new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION tg_jobs_count_insert()",
    "CREATE TRIGGER tg_jobs_count_delete AFTER DELETE ON tg_jobs "
    "REFERENCING OLD TABLE AS tg_old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION tg_jobs_count_delete()",
    # Heartbeats and progress updates change other columns: the WHEN keeps them free.
    "CREATE TRIGGER tg_jobs_count_update AFTER UPDATE OF status ON tg_jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION tg_jobs_count_update()",
]

_ADD = ("INSERT INTO tg_job_counts (tenant, status, n) VALUES ({t}.tenant, {t}.status, {d}) "
        "ON CONFLICT (tenant, status) DO UPDATE SET n = n + excluded.n;")
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER tg_jobs_count_insert AFTER INSERT ON tg_jobs BEGIN "
    f"{_ADD.format(t='NEW', d=1)} END",
    f"CREATE TRIGGER tg_jobs_count_delete AFTER DELETE ON tg_jobs BEGIN "
    f"{_ADD.format(t='OLD', d=-1)} END",
    f"CREATE TRIGGER tg_jobs_count_update AFTER UPDATE OF status ON tg_jobs "
    f"WHEN OLD.status IS NOT NEW.status BEGIN "
    f"{_ADD.format(t='OLD', d=-1)} {_ADD.format(t='NEW', d=1)} END",
]
TRIGGERS = ("tg_jobs_count_insert", "tg_jobs_count_delete", "tg_jobs_count_update")


def upgrade() -> None:
    # The sweep's looks at waiting jobs (see tables.py), partial indexes.
    op.create_index("ix_tg_jobs_undispatched", "tg_jobs", ["updated_at"],
                    postgresql_where=sa.text(WAITING_UNDISPATCHED),
                    sqlite_where=sa.text(WAITING_UNDISPATCHED))
    op.create_index("ix_tg_jobs_waiting_dispatched", "tg_jobs", ["priority", "dispatched_at"],
                    postgresql_where=sa.text(WAITING_DISPATCHED),
                    sqlite_where=sa.text(WAITING_DISPATCHED))
    op.create_table(
        "tg_job_counts",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tg_job_count_deltas",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                       f"BEGIN {body} RETURN NULL; END $$")
        for trigger in PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute("INSERT INTO tg_job_counts (tenant, status, n) "
               "SELECT tenant, status, count(*) FROM tg_jobs GROUP BY tenant, status")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON tg_jobs" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("tg_job_count_deltas")
    op.drop_table("tg_job_counts")
    op.drop_index("ix_tg_jobs_waiting_dispatched", "tg_jobs")
    op.drop_index("ix_tg_jobs_undispatched", "tg_jobs")
