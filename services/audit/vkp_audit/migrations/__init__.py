"""The audit service's Alembic migrations (version table alembic_version_audit)."""
