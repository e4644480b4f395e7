"""Alarm handling logs: each alarm's current segment and when it is due to be cut, and on the
entries the alarm id and segment of alarm steps and handling logs (vkp_journaling.domain.alarm).

Alarm steps stored before this migration have no alarm id: they stay held, as they were.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The alarm steps (a literal: a partial index serves only a query that names it).
ALARM_STEP = "kind = 'alarm_step'"


def upgrade() -> None:
    op.create_table(
        "journal_alarms",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("patient", sa.String(11), primary_key=True),
        sa.Column("vendor_system", sa.String(300), primary_key=True),
        sa.Column("alarm_id", sa.String(128), primary_key=True),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("due_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_journal_alarms_due",
        "journal_alarms",
        ["due_time"],
        sqlite_where=sa.text("due_time IS NOT NULL"),
        postgresql_where=sa.text("due_time IS NOT NULL"),
    )
    op.add_column(
        "journal_entries",
        sa.Column("alarm_id", sa.String(128), nullable=False, server_default=""),
    )
    op.add_column("journal_entries", sa.Column("alarm_segment", sa.Integer, nullable=True))
    op.create_index(
        "ix_journal_entries_alarm",
        "journal_entries",
        ["municipality", "patient", "alarm_id", "alarm_segment"],
        sqlite_where=sa.text(ALARM_STEP),
        postgresql_where=sa.text(ALARM_STEP),
    )


def downgrade() -> None:
    op.drop_index("ix_journal_entries_alarm", "journal_entries")
    with op.batch_alter_table("journal_entries") as batch:
        batch.drop_column("alarm_segment")
        batch.drop_column("alarm_id")
    op.drop_index("ix_journal_alarms_due", "journal_alarms")
    op.drop_table("journal_alarms")
