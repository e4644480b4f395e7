"""The registry's Alembic migrations (version table alembic_version_registry)."""
