"""Alembic environment of the audit service: the shared runner with the audit tables."""

from vkp_audit.store import metadata
from vkp_lib.db.alembic_env import run_migrations

run_migrations(metadata)
