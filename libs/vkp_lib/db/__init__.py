"""The storage layer every service uses: one database per service.

- `database`: `Database`, SQLite (a file per service, the default) or PostgreSQL: reads on a pool
  of their own; writes grouped by one writer task into few durable transactions (group commit);
  Alembic migrations with a version table per service.
- `settings`: `DatabaseSettings`, from the `VKP_DB_*` variables.
- `alembic_env`: `run_migrations`, what a service's migrations `env.py` calls.
- `rows`: `aware`, `insert`, `rowcount`, `new_id`, `sqlite_time`: the same handling of times,
  conflicts, counts and new ids in every store.
"""

from __future__ import annotations

from vkp_lib.db.alembic_env import run_migrations
from vkp_lib.db.database import Database, WriterStopped, async_url
from vkp_lib.db.rows import aware, insert, new_id, rowcount, sqlite_time
from vkp_lib.db.settings import DatabaseSettings

__all__ = [
    "Database",
    "DatabaseSettings",
    "WriterStopped",
    "async_url",
    "aware",
    "insert",
    "new_id",
    "rowcount",
    "run_migrations",
    "sqlite_time",
]
