"""The journaling service's tables, as its migrations made them (vkp_journaling.migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

MIGRATIONS = "vkp_journaling.migrations"
VERSION_TABLE = "alembic_version_journaling"
#: An unleased queue's lease_until.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = sa.MetaData()
entries = sa.Table(
    "journal_entries",
    metadata,
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
    # An EntryState value.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error_reason", sa.String(100), nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("journaled_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("note_identifier", sa.String(100), nullable=False),
    # The audit outbox: a journaled note whose audit record is still owed.
    sa.Column("audit_pending", sa.Boolean, nullable=False),
)
queues = sa.Table(
    "journal_queues",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("patient", sa.String(11), primary_key=True),
    # The per-patient sequence: the last number handed out.
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
)
