"""Alembic environment of the journaling service: the shared runner with its tables."""

from vkp_journaling.tables import metadata
from vkp_lib.db.alembic_env import run_migrations

run_migrations(metadata)
