"""The audit log: chain heads, records, the patients they name, and signed checkpoints.

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
        "audit_chains",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("head_sequence", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_records",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(36), nullable=False, unique=True),
        sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_audit_records_time", "audit_records", ["municipality", "occurred_time", "sequence"]
    )
    op.create_table(
        "audit_record_patients",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("national_id", sa.String(11), primary_key=True),
    )
    op.create_index(
        "ix_audit_record_patients_patient",
        "audit_record_patients",
        ["municipality", "national_id"],
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("municipality", sa.String(9), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("sign_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_checkpoints", "audit_record_patients", "audit_records", "audit_chains"):
        op.drop_table(table)
