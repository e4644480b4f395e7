"""Journal entries and per-patient queues.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("municipality", sa.String(9), nullable=False),
        sa.Column("patient", sa.String(11), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("service_code", sa.String(8), nullable=False),
        sa.Column("vendor_system", sa.String(300), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("traceparent", sa.String(55), nullable=False),
        sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_reason", sa.String(100), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("journaled_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note_identifier", sa.String(100), nullable=False),
        sa.Column("audit_pending", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_journal_entries_queue", "journal_entries", ["municipality", "patient", "sequence"]
    )
    op.create_index(
        "ix_journal_entries_listing", "journal_entries", ["municipality", "create_time"]
    )
    op.create_index("ix_journal_entries_audit", "journal_entries", ["audit_pending"])
    op.create_table(
        "journal_queues",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("patient", sa.String(11), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journal_queues")
    op.drop_table("journal_entries")
