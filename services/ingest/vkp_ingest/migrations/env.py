"""Alembic environment of the ingest service: the shared runner with its tables."""

from vkp_ingest.store import metadata
from vkp_lib.db.alembic_env import run_migrations

run_migrations(metadata)
