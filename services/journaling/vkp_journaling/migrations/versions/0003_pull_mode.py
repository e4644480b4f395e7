"""Pull mode: the numbers in which a pull-mode municipality's EPJ is offered its notes.

Empty until pull mode lands (issue 16); it holds this place in the chain so that the alarm
handling logs' migration can follow it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
