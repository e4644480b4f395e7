"""The ingest service's Alembic migrations (version table alembic_version_ingest)."""
