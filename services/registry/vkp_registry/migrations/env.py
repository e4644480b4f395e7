"""Alembic environment of the registry: the shared runner with the registry's tables."""

from vkp_lib.db.alembic_env import run_migrations
from vkp_registry.store import metadata

run_migrations(metadata)
