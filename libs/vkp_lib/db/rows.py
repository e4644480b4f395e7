"""Small things every store needs from its rows, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
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


def new_id() -> str:
    """A new row id: a UUID (version 7) that begins with the time in milliseconds, so the rows
    made together sit together in an index instead of each in a random page of it (fewer pages
    written per commit, and per checkpoint)."""
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 + 62 used
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (random >> 68) << 64
        | 0b10 << 62
        | random & 0x3FFF_FFFF_FFFF_FFFF
    )
    hexed = f"{value:032x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def sqlite_time(value: datetime) -> str:
    """A time as SQLAlchemy's DateTime stores it on SQLite (in UTC, as `aware` reads it back), for
    values handed to the driver as they are (`Connection.exec_driver_sql`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
