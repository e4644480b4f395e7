"""The probe_notes table."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "first_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "probe_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("probe_notes")
