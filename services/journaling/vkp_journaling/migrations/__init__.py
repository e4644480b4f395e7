"""The journaling service's Alembic migrations (version table alembic_version_journaling)."""
