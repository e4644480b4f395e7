"""Claims by due time: each patient queue's due time (indexed per municipality), the list of
municipalities, and a partial index of the notes still waiting (the heads).

The due time of an existing queue: its lease's expiry while leased, else its head's next attempt
(or, when the head was never tried, the head's create time); NULL when nothing waits in it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: The waiting notes, as in 0002 (literals: a partial index serves only a query that names them).
WAITING_NOTE = "state IN ('QUEUED', 'RETRYING') AND kind != 'alarm_step'"

_entries = sa.table(
    "journal_entries",
    sa.column("municipality", sa.String),
    sa.column("patient", sa.String),
    sa.column("sequence", sa.BigInteger),
    sa.column("state", sa.String),
    sa.column("kind", sa.String),
    sa.column("next_attempt_time", sa.DateTime(timezone=True)),
    sa.column("create_time", sa.DateTime(timezone=True)),
)
_queues = sa.table(
    "journal_queues",
    sa.column("municipality", sa.String),
    sa.column("patient", sa.String),
    sa.column("lease_until", sa.DateTime(timezone=True)),
    sa.column("due_time", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "journal_municipalities",
        sa.Column("municipality", sa.String(9), primary_key=True),
    )
    op.execute(
        sa.text(
            "INSERT INTO journal_municipalities (municipality) "
            "SELECT DISTINCT municipality FROM journal_queues"
        )
    )
    op.add_column("journal_queues", sa.Column("due_time", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_journal_entries_head",
        "journal_entries",
        ["municipality", "patient", "sequence"],
        sqlite_where=sa.text(WAITING_NOTE),
        postgresql_where=sa.text(WAITING_NOTE),
    )
    head_due = (
        sa.select(sa.func.coalesce(_entries.c.next_attempt_time, _entries.c.create_time))
        .where(
            _entries.c.municipality == _queues.c.municipality,
            _entries.c.patient == _queues.c.patient,
            sa.text(WAITING_NOTE),
        )
        .order_by(_entries.c.sequence)
        .limit(1)
        .scalar_subquery()
    )
    op.execute(sa.update(_queues).values(due_time=head_due))
    now = sa.literal(datetime.now(UTC), sa.DateTime(timezone=True))
    op.execute(
        sa.update(_queues)
        .where(_queues.c.due_time.is_not(None), _queues.c.lease_until > now)
        .values(due_time=_queues.c.lease_until)
    )
    op.create_index(
        "ix_journal_queues_due",
        "journal_queues",
        ["municipality", "due_time"],
        sqlite_where=sa.text("due_time IS NOT NULL"),
        postgresql_where=sa.text("due_time IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_journal_queues_due", "journal_queues")
    op.drop_index("ix_journal_entries_head", "journal_entries")
    with op.batch_alter_table("journal_queues") as batch:
        batch.drop_column("due_time")
    op.drop_table("journal_municipalities")
