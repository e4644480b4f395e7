"""Alarm handling logs: each alarm's segments and when the next one is due.

Empty until the handling logs land (issue 16).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
