"""The probe_tags table."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "second_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table("probe_tags", sa.Column("name", sa.Text, primary_key=True))


def downgrade() -> None:
    op.drop_table("probe_tags")
