"""Alembic environment of these test migrations."""

from vkp_lib.db.alembic_env import run_migrations

run_migrations(None)
