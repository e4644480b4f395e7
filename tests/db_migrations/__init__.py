"""Two tiny Alembic migration packages for the storage layer's tests, each with its own table."""
