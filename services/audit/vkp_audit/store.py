"""The audit service's storage: append-only records, hash-chained per municipality.

A chain's head (its last sequence and hash) is a row of `audit_chains`, locked (`FOR UPDATE` on
PostgreSQL; the single writer on SQLite) while records join the chain, so each chain stays
linear however many replicas write. The records of one append are committed together; the
chains of an append are locked in municipality order, so two replicas never wait on each other
in a circle. A record id already stored is found under that lock, before chaining, and answered
as a repeat: one duplicate never rolls back the others.

`body` is the record's canonical form, the very text its hash covers; queries read records from
it, and the columns beside it (time, client id, the patients' index) only find them.

An append is the hot path (lookup awaits each record): a sync work (`Database.write_sync`) whose
heads and stored ids are read with statements made once, and whose rows are written as plain SQL
with the values in the driver's form (through SQLAlchemy's connection, so traced): on SQLite three
executemany, on PostgreSQL one statement over arrays (`unnest`), one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_audit.domain.chain import GENESIS, Index, StoredRecord, chained, from_canonical
from vkp_audit.domain.model import Appended, AuditRecord, Checkpoint, Page, RecordQuery
from vkp_lib.db import Database, aware, insert, sqlite_time
from vkp_lib.logging import get_logger
from vkp_lib.paging import page_token, position

MIGRATIONS = "vkp_audit.migrations"
VERSION_TABLE = "alembic_version_audit"
DEFAULT_PAGE_SIZE = 50

log = get_logger("vkp.audit.store")
metadata = sa.MetaData()
chains = sa.Table(
    "audit_chains",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("head_sequence", sa.BigInteger, nullable=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
)
records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.String(36), nullable=False, unique=True),
    sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
record_patients = sa.Table(
    "audit_record_patients",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("national_id", sa.String(11), primary_key=True),
)
checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("sign_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

#: The statements of an append, made once.
_HEADS = (
    sa.select(chains.c.municipality, chains.c.head_sequence, chains.c.head_hash)
    .where(chains.c.municipality.in_(sa.bindparam("municipalities", expanding=True)))
    .order_by(chains.c.municipality)
    .with_for_update()
)
_STORED = sa.select(records.c.record_id, records.c.sequence).where(
    records.c.record_id.in_(sa.bindparam("ids", expanding=True))
)
_RECORD_COLUMNS = "municipality, sequence, record_id, occurred_time, client_id, hash, body"
_SQLITE_ADD_RECORDS = (
    f"INSERT INTO audit_records ({_RECORD_COLUMNS}) "  # noqa: S608 - column names only
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_ADD_PATIENTS = (
    "INSERT INTO audit_record_patients (municipality, sequence, national_id) VALUES (?, ?, ?)"
)
_SQLITE_MOVE_HEAD = (
    "UPDATE audit_chains SET head_sequence = ?, head_hash = ? WHERE municipality = ?"
)
#: PostgreSQL: the records ($1-$7), their patients ($8-$10) and the chains' new heads ($11-$13),
#: each as arrays of their columns, in one statement.
_POSTGRESQL_WRITE = f"""
    WITH added AS (
        INSERT INTO audit_records ({_RECORD_COLUMNS})
        SELECT * FROM unnest(
            $1::varchar[], $2::bigint[], $3::varchar[], $4::timestamptz[], $5::varchar[],
            $6::varchar[], $7::text[]
        )
    ), named AS (
        INSERT INTO audit_record_patients (municipality, sequence, national_id)
        SELECT * FROM unnest($8::varchar[], $9::bigint[], $10::varchar[])
    )
    UPDATE audit_chains c SET head_sequence = h.sequence, head_hash = h.hash
    FROM unnest($11::varchar[], $12::bigint[], $13::varchar[]) AS h(municipality, sequence, hash)
    WHERE c.municipality = h.municipality
"""  # noqa: S608 - column names only
Row = tuple[Any, ...]


def _after(parts: list[str]) -> tuple[datetime, int]:
    return datetime.fromisoformat(parts[0]), int(parts[1])


def _checkpoint(row: sa.Row[Any]) -> Checkpoint:
    return Checkpoint(
        row.municipality,
        row.sequence,
        row.head_hash,
        aware(row.sign_time),
        row.key_id,
        row.signature,
    )


def _write_sqlite(
    connection: Connection, rows: list[Row], named: list[Row], heads: list[Row]
) -> None:
    """SQLite: the records, their patients and the moved heads, an executemany each."""
    connection.exec_driver_sql(
        _SQLITE_ADD_RECORDS, [(*row[:3], sqlite_time(row[3]), *row[4:]) for row in rows]
    )
    if named:
        connection.exec_driver_sql(_SQLITE_ADD_PATIENTS, named)
    connection.exec_driver_sql(_SQLITE_MOVE_HEAD, [(s, h, m) for m, s, h in heads])


def _write_postgresql(
    connection: Connection, rows: list[Row], named: list[Row], heads: list[Row]
) -> None:
    """PostgreSQL: the same in one statement (`_POSTGRESQL_WRITE`)."""
    values = (*_columns(rows, 7), *_columns(named, 3), *_columns(heads, 3))
    connection.exec_driver_sql(_POSTGRESQL_WRITE, values)


def _columns(table: list[Row], width: int) -> list[list[Any]]:
    """A table's rows as its `width` columns."""
    if not table:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*table, strict=True)]


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    async def append(self, batch: Sequence[AuditRecord], now: datetime) -> list[Appended]:
        """Appends the records to their municipalities' chains in one transaction, with a
        handful of statements whatever the number of records and chains (run together in the
        writer, `Database.write_sync`)."""
        lock_heads = self._lock_heads
        write = _write_postgresql if self.db.dialect == "postgresql" else _write_sqlite

        def work(connection: Connection) -> dict[str, Appended]:
            heads = lock_heads(connection, sorted({r.municipality for r in batch}))
            stored = connection.execute(_STORED, {"ids": list({r.record_id for r in batch})})
            placed = {rid: Appended(rid, seq, created=False) for rid, seq in stored}
            moved = dict(heads)
            rows: list[Row] = []  # in _RECORD_COLUMNS order
            named: list[Row] = []  # municipality, sequence, national id
            for record in batch:
                if record.record_id in placed:
                    continue  # stored before, or twice in this batch
                municipality = record.municipality
                sequence, previous = moved[municipality]
                sequence += 1
                body, hashed = chained(record, sequence, previous, now)
                rows.append(
                    (
                        municipality,
                        sequence,
                        record.record_id,
                        record.occurred_time,
                        record.actor.client_id,
                        hashed,
                        body,
                    )
                )
                patients = sorted({p.national_id for p in record.patients})
                named += [(municipality, sequence, p) for p in patients]
                placed[record.record_id] = Appended(record.record_id, sequence, True)
                moved[municipality] = (sequence, hashed)
            changed = [(m, *head) for m, head in moved.items() if head != heads[m]]
            if rows:
                write(connection, rows, named, changed)
            return placed

        placed = await self.db.write_sync(work)
        return [placed[r.record_id] for r in batch]

    def _lock_heads(
        self, connection: Connection, municipalities: list[str]
    ) -> dict[str, tuple[int, str]]:
        """The heads of these chains, locked in municipality order (made when new)."""
        wanted = {"municipalities": municipalities}
        heads = {m: (int(s), str(h)) for m, s, h in connection.execute(_HEADS, wanted)}
        missing = [m for m in municipalities if m not in heads]
        if missing:
            connection.execute(
                insert(self.db.dialect, chains).on_conflict_do_nothing(
                    index_elements=["municipality"]
                ),
                [{"municipality": m, "head_sequence": 0, "head_hash": GENESIS} for m in missing],
            )
            heads = {m: (int(s), str(h)) for m, s, h in connection.execute(_HEADS, wanted)}
        return heads

    async def heads(self) -> dict[str, tuple[int, str]]:
        async with self.db.read() as session:
            rows = await session.execute(sa.select(chains))
            return {r.municipality: (r.head_sequence, r.head_hash) for r in rows}

    async def query(self, wanted: RecordQuery) -> Page:
        """Records of a municipality, newest first, by patient, actor and time."""
        filters = json.dumps(
            [
                wanted.municipality,
                wanted.national_id,
                wanted.client_id,
                str(wanted.since),
                str(wanted.until),
            ]
        )
        after = position(wanted.page_token, filters, _after)
        size = wanted.page_size or DEFAULT_PAGE_SIZE
        query = sa.select(records.c.body, records.c.hash).where(
            records.c.municipality == wanted.municipality
        )
        if wanted.national_id:
            query = query.join(
                record_patients,
                sa.and_(
                    record_patients.c.municipality == records.c.municipality,
                    record_patients.c.sequence == records.c.sequence,
                ),
            ).where(record_patients.c.national_id == wanted.national_id)
        if wanted.client_id:
            query = query.where(records.c.client_id == wanted.client_id)
        if wanted.since is not None:
            query = query.where(records.c.occurred_time >= wanted.since)
        if wanted.until is not None:
            query = query.where(records.c.occurred_time < wanted.until)
        if after is not None:
            query = query.where(
                sa.or_(
                    records.c.occurred_time < after[0],
                    sa.and_(records.c.occurred_time == after[0], records.c.sequence < after[1]),
                )
            )
        query = query.order_by(records.c.occurred_time.desc(), records.c.sequence.desc())
        async with self.db.read() as session:
            rows = list(await session.execute(query.limit(size + 1)))
        found = [from_canonical(body, stored_hash) for body, stored_hash in rows[:size]]
        more = len(rows) > size
        last = found[-1] if more else None
        mark = [last.occurred_time.isoformat(), str(last.sequence)] if last else []
        return Page(found, page_token(mark, filters) if last else "")

    async def chain(
        self, municipality: str, from_sequence: int, to_sequence: int
    ) -> tuple[list[StoredRecord], str, list[Checkpoint]]:
        """A stretch of a chain as stored, the hash before it, and the checkpoints within it."""
        async with self.db.read() as session:
            in_range = [records.c.municipality == municipality, records.c.sequence >= from_sequence]
            if to_sequence:
                in_range.append(records.c.sequence <= to_sequence)
            query = (
                sa.select(
                    records.c.sequence,
                    records.c.body,
                    records.c.hash,
                    records.c.occurred_time,
                    records.c.client_id,
                )
                .where(*in_range)
                .order_by(records.c.sequence)
            )
            named: dict[int, set[str]] = {}
            patients_in_range = [
                record_patients.c.municipality == municipality,
                record_patients.c.sequence >= from_sequence,
            ]
            if to_sequence:
                patients_in_range.append(record_patients.c.sequence <= to_sequence)
            for sequence, national_id in await session.execute(
                sa.select(record_patients.c.sequence, record_patients.c.national_id).where(
                    *patients_in_range
                )
            ):
                named.setdefault(int(sequence), set()).add(national_id)
            rows = [
                StoredRecord(int(s), b, h, Index(aware(t), c, frozenset(named.get(int(s), ()))))
                for s, b, h, t, c in await session.execute(query)
            ]
            previous = GENESIS
            if from_sequence > 1:
                before = await session.execute(
                    sa.select(records.c.hash).where(
                        records.c.municipality == municipality,
                        records.c.sequence == from_sequence - 1,
                    )
                )
                previous = before.scalar_one_or_none() or ""
            signed = await session.execute(
                sa.select(checkpoints).where(
                    checkpoints.c.municipality == municipality,
                    checkpoints.c.sequence >= from_sequence,
                    *([checkpoints.c.sequence <= to_sequence] if to_sequence else []),
                )
            )
            found = [_checkpoint(c) for c in signed]
        return rows, previous, found

    async def latest_checkpoint(self, municipality: str) -> Checkpoint | None:
        async with self.db.read() as session:
            row = (
                await session.execute(
                    sa.select(checkpoints)
                    .where(checkpoints.c.municipality == municipality)
                    .order_by(checkpoints.c.sequence.desc())
                    .limit(1)
                )
            ).one_or_none()
        return None if row is None else _checkpoint(row)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Stores a checkpoint; one already signed for that head is kept instead."""

        async def work(session: AsyncSession) -> Checkpoint:
            existing = (
                await session.execute(
                    sa.select(checkpoints).where(
                        checkpoints.c.municipality == checkpoint.municipality,
                        checkpoints.c.sequence == checkpoint.sequence,
                    )
                )
            ).one_or_none()
            if existing is not None:
                return _checkpoint(existing)
            await session.execute(
                sa.insert(checkpoints).values(
                    municipality=checkpoint.municipality,
                    sequence=checkpoint.sequence,
                    head_hash=checkpoint.head_hash,
                    sign_time=checkpoint.sign_time,
                    key_id=checkpoint.key_id,
                    signature=checkpoint.signature,
                )
            )
            return checkpoint

        return await self.db.write(work)
