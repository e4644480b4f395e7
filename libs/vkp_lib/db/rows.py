"""Small things every store needs from its rows, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult


def aware(value: datetime) -> datetime:
    """A stored time as UTC-aware: SQLite gives back naive datetimes."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def insert(dialect: str, table: sa.Table) -> Any:
    """INSERT for the database's dialect, so `on_conflict_do_nothing` is at hand."""
    return postgresql_insert(table) if dialect == "postgresql" else sqlite_insert(table)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched (a session's execute types it as a plain Result)."""
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
