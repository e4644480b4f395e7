"""The registry's first tables: resources, client ids, the revision counter and the change feed.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _resource(name: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        name,
        sa.Column("name", sa.String(300), primary_key=True),
        *columns,
        sa.Column("body", sa.Text, nullable=False),
    )


def upgrade() -> None:
    op.create_table(
        "registry_revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO registry_revision (id, revision) VALUES (1, 0)")
    op.create_table(
        "registry_changes",
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("commit_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change_type", sa.String(16), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_name", sa.String(300), nullable=False),
        sa.Column("body", sa.Text, nullable=True),
    )
    op.create_table(
        "registry_requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    _resource(
        "registry_municipalities",
        sa.Column("municipality_number", sa.String(4), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
    )
    _resource("registry_vendors")
    _resource("registry_vendor_systems", sa.Column("vendor", sa.String(40), nullable=False))
    op.create_index("ix_registry_vendor_systems_vendor", "registry_vendor_systems", ["vendor"])
    op.create_table(
        "registry_client_ids",
        sa.Column("client_id", sa.String(200), primary_key=True),
        sa.Column("vendor_system", sa.String(300), nullable=False),
    )
    op.create_index(
        "ix_registry_client_ids_vendor_system", "registry_client_ids", ["vendor_system"]
    )
    _resource("registry_epj_endpoints")
    _resource(
        "registry_agreements",
        sa.Column("municipality", sa.String(9), nullable=False),
        sa.Column("vendor_system", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index("ix_registry_agreements_municipality", "registry_agreements", ["municipality"])
    op.create_index(
        "ix_registry_agreements_vendor_system", "registry_agreements", ["vendor_system"]
    )
    _resource("registry_partner_profiles")


def downgrade() -> None:
    for table in (
        "registry_partner_profiles",
        "registry_agreements",
        "registry_epj_endpoints",
        "registry_client_ids",
        "registry_vendor_systems",
        "registry_vendors",
        "registry_municipalities",
        "registry_requests",
        "registry_changes",
        "registry_revision",
    ):
        op.drop_table(table)
