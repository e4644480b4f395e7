"""Received events (the outbox toward journaling), the position counter, the relay lease and
the audit outbox.

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
        "ingest_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vendor_system", sa.String(300), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("municipality", sa.String(9), nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("traceparent", sa.String(55), nullable=False),
        sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("sent", sa.Boolean, nullable=False),
        sa.UniqueConstraint("vendor_system", "event_id", name="uq_ingest_events_vendor_event"),
    )
    op.create_index("ix_ingest_events_unsent", "ingest_events", ["sent", "position"])
    op.create_index("ix_ingest_events_client", "ingest_events", ["client_id", "event_id"])
    op.create_table(
        "ingest_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO ingest_counter (id, position) VALUES (1, 0)")
    op.create_table(
        "ingest_relay_lease",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_audit_outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("ingest_audit_outbox", "ingest_relay_lease", "ingest_counter", "ingest_events"):
        op.drop_table(table)
