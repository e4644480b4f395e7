"""Pull mode: the numbers in which a pull-mode municipality's EPJ is offered its notes.

- `journal_municipalities.last_pull_sequence`: the municipality's counter, the last number
  handed out (numbers are handed out under the row's lock, vkp_journaling.domain.pull);
- `journal_entries.pull_sequence`: a note's number (NULL: not numbered yet), unique per
  municipality; `read_until`: when a READ note is offered again;
- partial indexes: the notes still to number (waiting, not numbered), the offered ones not yet
  answered by number (where a first page starts), and the READ ones by `read_until`. Entries of
  push-mode municipalities are in the first only, as they are in the heads' index.
- `last_error_reason` widened (PostgreSQL; SQLite does not enforce lengths): a refused note's
  dead-letter reason carries the EPJ's words.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Literals, as in the tables (a partial index serves only a query that names its condition).
TO_NUMBER = "pull_sequence IS NULL AND state IN ('QUEUED', 'RETRYING') AND kind != 'alarm_step'"
OFFERED = "pull_sequence IS NOT NULL AND state IN ('QUEUED', 'RETRYING', 'READ')"
NUMBERED = "pull_sequence IS NOT NULL"
READ = "state = 'READ'"


def upgrade() -> None:
    op.add_column(
        "journal_municipalities",
        sa.Column("last_pull_sequence", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("journal_entries", sa.Column("pull_sequence", sa.BigInteger, nullable=True))
    op.add_column(
        "journal_entries", sa.Column("read_until", sa.DateTime(timezone=True), nullable=True)
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "journal_entries",
            "last_error_reason",
            type_=sa.String(600),
            existing_type=sa.String(100),
            existing_nullable=False,
        )
    op.create_index(
        "ix_journal_entries_pull_sequence",
        "journal_entries",
        ["municipality", "pull_sequence"],
        unique=True,
        sqlite_where=sa.text(NUMBERED),
        postgresql_where=sa.text(NUMBERED),
    )
    op.create_index(
        "ix_journal_entries_to_number",
        "journal_entries",
        ["municipality", "create_time"],
        sqlite_where=sa.text(TO_NUMBER),
        postgresql_where=sa.text(TO_NUMBER),
    )
    op.create_index(
        "ix_journal_entries_offered",
        "journal_entries",
        ["municipality", "pull_sequence"],
        sqlite_where=sa.text(OFFERED),
        postgresql_where=sa.text(OFFERED),
    )
    op.create_index(
        "ix_journal_entries_read",
        "journal_entries",
        ["municipality", "read_until"],
        sqlite_where=sa.text(READ),
        postgresql_where=sa.text(READ),
    )


def downgrade() -> None:
    for index in (
        "ix_journal_entries_read",
        "ix_journal_entries_offered",
        "ix_journal_entries_to_number",
        "ix_journal_entries_pull_sequence",
    ):
        op.drop_index(index, "journal_entries")
    with op.batch_alter_table("journal_entries") as batch:
        batch.drop_column("read_until")
        batch.drop_column("pull_sequence")
    with op.batch_alter_table("journal_municipalities") as batch:
        batch.drop_column("last_pull_sequence")
