"""The alarms' state: one row per (vendor system, alarm id), written with each new alarm step
in the transaction that registers it: whose alarm it is (its first step's municipality and
patient), its kind, and the times its steps give it (the earliest, the latest, the earliest
closing step's; NULL while open). CheckOpenAlarm reads it by its key.

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


def upgrade() -> None:
    op.create_table(
        "ingest_alarms",
        sa.Column("vendor_system", sa.String(300), primary_key=True),
        sa.Column("alarm_id", sa.String(128), primary_key=True),
        sa.Column("municipality", sa.String(9), nullable=False),
        sa.Column("patient", sa.String(11), nullable=False),
        sa.Column("alert_code", sa.String(8), nullable=False),
        sa.Column("opened_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_step_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_time", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ingest_alarms")
