"""What a service's Alembic `env.py` calls, so that each env.py is a few lines:

    from vkp_lib.db.alembic_env import run_migrations
    from vkp_audit.store import metadata

    run_migrations(metadata)

Migrations run online only, over the connection `Database.migrate` hands over in
`config.attributes`, inside its transaction, with the service's own version table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context
from sqlalchemy import Connection, MetaData


def run_migrations(target_metadata: MetaData | Sequence[MetaData] | None) -> None:
    """Runs the pending migrations on the connection and version table given by `migrate`."""
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported: use Database.migrate")
    attributes = context.config.attributes
    connection = attributes.get("connection")
    version_table = attributes.get("version_table")
    if not isinstance(connection, Connection) or not isinstance(version_table, str):
        raise RuntimeError(
            "migrations run through Database.migrate, which passes the connection and the "
            "version table"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
