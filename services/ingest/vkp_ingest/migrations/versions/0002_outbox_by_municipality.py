"""The outbox read by municipality: a partial index of the unsent events by (municipality,
position), so the relay finds each municipality's oldest unsent events, and which
municipalities have any, at a cost that does not grow with the backlog; it replaces the index
by (sent, position), which held every event.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ingest_events_outbox",
        "ingest_events",
        ["municipality", "position"],
        sqlite_where=sa.text("sent = 0"),
        postgresql_where=sa.text("sent = false"),
    )
    op.drop_index("ix_ingest_events_unsent", table_name="ingest_events")


def downgrade() -> None:
    op.create_index("ix_ingest_events_unsent", "ingest_events", ["sent", "position"])
    op.drop_index("ix_ingest_events_outbox", table_name="ingest_events")
