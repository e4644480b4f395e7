"""The ingest service's storage: received events (their own outbox toward journaling), the
idempotency of event ids, and the audit outbox.

An event is unique per (vendor system, event id): `INSERT … ON CONFLICT DO NOTHING RETURNING
id`, and for a key stored before, the stored content hash decides between a repeat (the original
receipt) and a reused id; a duplicate never rolls back the other events of a grouped commit. Each
new event takes the next position from a one-row counter in its own transaction, so positions are
in commit order across replicas (a key stored before leaves a gap). The relay sends each
municipality's events in position order, which keeps each patient's events in order, and every
municipality that has events waiting its share of each call. One relay at a time holds the outbox
(a lease row), whichever replica it runs in. The writes are sync works (`Database.write_sync`):
a group's statements run together, made once at import. A group's registration is the hot path:
its statements are plain SQL (run through SQLAlchemy's connection, so they are traced as every
statement is) with their values in the driver's own form, written for each database: on SQLite
the counter bumped, the events inserted with one executemany (its row count tells whether every
one was new; only when not are the new ones looked up) and the audit records inserted; on
PostgreSQL all three in one statement over arrays (`unnest`), one round trip. New rows get
time-ordered ids (`new_id`), so a group's rows share index pages.

An alarm step that is new in a registration is also kept in its alarm's state (`ingest_alarms`,
one row per vendor system and alarm id; the rules are domain/alarm.py's), in the same
transaction, so an acknowledged step is in it: one upsert per step, each alarm's steps in the
order they came (SQLite: an executemany; PostgreSQL: a second statement, after the one that
tells which events are new), each taking the minimum or maximum of the times, and changing
nothing when the row is another patient's. A group with no new alarm step runs none of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from vkp_ingest.domain.alarm import Alarm, AlarmStep
from vkp_ingest.domain.model import Outgoing, Registered, Registration, StoredEvent
from vkp_lib.db import Database, aware, insert, new_id, sqlite_time

MIGRATIONS = "vkp_ingest.migrations"
VERSION_TABLE = "alembic_version_ingest"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = sa.MetaData()
events = sa.Table(
    "ingest_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("vendor_system", sa.String(300), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("municipality", sa.String(9), nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("traceparent", sa.String(55), nullable=False),
    sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("sent", sa.Boolean, nullable=False),
    sa.UniqueConstraint("vendor_system", "event_id", name="uq_ingest_events_vendor_event"),
)
counter = sa.Table(
    "ingest_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
relay_lease = sa.Table(
    "ingest_relay_lease",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("until", sa.DateTime(timezone=True), nullable=False),
)
audit_outbox = sa.Table(
    "ingest_audit_outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("record", sa.LargeBinary, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
)
alarms = sa.Table(
    "ingest_alarms",
    metadata,
    sa.Column("vendor_system", sa.String(300), primary_key=True),
    sa.Column("alarm_id", sa.String(128), primary_key=True),
    sa.Column("municipality", sa.String(9), nullable=False),
    sa.Column("patient", sa.String(11), nullable=False),
    sa.Column("alert_code", sa.String(8), nullable=False),
    sa.Column("opened_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_step_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_time", sa.DateTime(timezone=True), nullable=True),
)

#: The columns of an incoming event's row a registration writes, in the order of its values;
#: then `receive_time`, `position` and `sent` (false).
_EVENT_VALUES = (
    "id",
    "vendor_system",
    "event_id",
    "client_id",
    "content_hash",
    "municipality",
    "event",
    "traceparent",
)
_EVENT_COLUMNS = ", ".join((*_EVENT_VALUES, "receive_time", "position", "sent"))
#: SQLite: takes `count` positions, returns the last; inserts the new events (a key stored before
#: is left alone); inserts audit records.
_SQLITE_BUMP = "UPDATE ingest_counter SET position = position + ? WHERE id = 1 RETURNING position"
_SQLITE_ADD_EVENTS = (
    f"INSERT INTO ingest_events ({_EVENT_COLUMNS}) "  # noqa: S608 - column names only
    f"VALUES ({', '.join('?' * (len(_EVENT_VALUES) + 2))}, 0) "
    "ON CONFLICT (vendor_system, event_id) DO NOTHING"
)
_SQLITE_ADD_AUDIT = "INSERT INTO ingest_audit_outbox (id, record, create_time) VALUES (?, ?, ?)"
#: The stored of these new ids (when some keys of a group were there before).
_INSERTED = sa.select(events.c.id).where(events.c.id.in_(sa.bindparam("ids", expanding=True)))
#: PostgreSQL, one statement: `count` positions taken ($1), the incoming events inserted from
#: arrays of their values ($2-$9) numbered from the counter (in its row lock, so in commit
#: order), each with the number of its request's audit record of its municipality ($10, 0 for
#: none); the audit records ($12, $13) inserted where an event of theirs was new; the new
#: events' ids returned. `receive_time` and `create_time` are $11.
_POSTGRESQL_REGISTER = f"""
    WITH bumped AS (
        UPDATE ingest_counter SET position = position + $1::bigint WHERE id = 1
        RETURNING position
    ), incoming AS (
        SELECT * FROM unnest(
            $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[],
            $7::varchar[], $8::bytea[], $9::varchar[], $10::int[]
        ) WITH ORDINALITY AS i({", ".join(_EVENT_VALUES)}, audit, n)
    ), added AS (
        INSERT INTO ingest_events ({_EVENT_COLUMNS})
        SELECT {", ".join(f"i.{c}" for c in _EVENT_VALUES)}, $11,
            (SELECT position FROM bumped) - $1::bigint + i.n, false
        FROM incoming i ORDER BY i.n
        ON CONFLICT (vendor_system, event_id) DO NOTHING
        RETURNING id
    ), audited AS (
        INSERT INTO ingest_audit_outbox (id, record, create_time)
        SELECT a.id, a.record, $11
        FROM unnest($12::varchar[], $13::bytea[]) WITH ORDINALITY AS a(id, record, n)
        WHERE a.n IN (SELECT i.audit FROM incoming i JOIN added USING (id))
    )
    SELECT id FROM added
"""  # noqa: S608 - column names only
#: One new alarm step into its alarm's state (domain/alarm.py `with_step`): the first step
#: makes the row; a later one of the same patient and municipality moves its times (the earliest
#: opening, the latest step, the earliest closing step); one of another patient changes nothing.
#: SQLite's two-argument min() is NULL when either is, hence the COALESCE; LEAST skips NULLs.
_ALARM_COLUMNS = (
    "vendor_system, alarm_id, municipality, patient, alert_code, "
    "opened_time, last_step_time, closed_time"
)
_ALARM_STEP = {
    dialect: f"""
    INSERT INTO ingest_alarms ({_ALARM_COLUMNS}) VALUES ({values})
    ON CONFLICT (vendor_system, alarm_id) DO UPDATE SET
        opened_time = {least}(ingest_alarms.opened_time, excluded.opened_time),
        last_step_time = {greatest}(ingest_alarms.last_step_time, excluded.last_step_time),
        closed_time = COALESCE(
            {least}(ingest_alarms.closed_time, excluded.closed_time),
            ingest_alarms.closed_time,
            excluded.closed_time
        )
    WHERE ingest_alarms.patient = excluded.patient
        AND ingest_alarms.municipality = excluded.municipality
    """  # noqa: S608 - column names and functions only
    for dialect, values, least, greatest in (
        ("sqlite", ", ".join("?" * 8), "min", "max"),
        ("postgresql", ", ".join(f"${n}" for n in range(1, 9)), "LEAST", "GREATEST"),
    )
}
_FIND_ALARM = sa.select(
    alarms.c.municipality,
    alarms.c.patient,
    alarms.c.alert_code,
    alarms.c.opened_time,
    alarms.c.last_step_time,
    alarms.c.closed_time,
).where(
    alarms.c.vendor_system == sa.bindparam("vendor_system"),
    alarms.c.alarm_id == sa.bindparam("alarm_id"),
)
_MARK_SENT = (
    sa.update(events).where(events.c.id.in_(sa.bindparam("ids", expanding=True))).values(sent=True)
)
_AUDIT_SENT = sa.delete(audit_outbox).where(
    audit_outbox.c.id.in_(sa.bindparam("ids", expanding=True))
)
_LEASE_ROW = {
    dialect: insert(dialect, relay_lease)
    .values(id=1, owner="", until=EPOCH)
    .on_conflict_do_nothing(index_elements=["id"])
    for dialect in ("sqlite", "postgresql")
}
_TAKE_LEASE = (
    sa.update(relay_lease)
    .where(
        relay_lease.c.id == 1,
        sa.or_(
            relay_lease.c.owner == sa.bindparam("holder"),
            relay_lease.c.until < sa.bindparam("now"),
        ),
    )
    .values(owner=sa.bindparam("holder"), until=sa.bindparam("held_until"))
)
#: The municipalities with unsent events: a skip scan of the outbox's partial index (migration
#: 0002), one index seek per municipality, however many events wait.
_WAITING = {
    dialect: sa.text(
        f"""
        WITH RECURSIVE waiting(municipality) AS (
            SELECT MIN(municipality) FROM ingest_events WHERE sent = {false}
            UNION ALL
            SELECT (
                SELECT MIN(e.municipality) FROM ingest_events e
                WHERE e.sent = {false} AND e.municipality > waiting.municipality
            )
            FROM waiting WHERE waiting.municipality IS NOT NULL
        )
        SELECT municipality FROM waiting WHERE municipality IS NOT NULL
        """  # noqa: S608 - no values: the dialect's literal false only
    )
    for dialect, false in (("sqlite", "0"), ("postgresql", "false"))
}
_OUTGOING = (
    events.c.id,
    events.c.vendor_system,
    events.c.client_id,
    events.c.event,
    events.c.traceparent,
    events.c.receive_time,
    events.c.position,
    events.c.municipality,
)


def _stored(connection: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The stored rows of these keys (per vendor system, so SQLite searches the unique index;
    a row-value IN scans)."""
    by_system: dict[str, list[str]] = {}
    for system, event_id in keys:
        by_system.setdefault(system, []).append(event_id)
    found = sa.select(
        events.c.id,
        events.c.vendor_system,
        events.c.event_id,
        events.c.content_hash,
        events.c.receive_time,
    ).where(
        sa.or_(
            *(
                sa.and_(events.c.vendor_system == system, events.c.event_id.in_(ids))
                for system, ids in by_system.items()
            )
        )
    )
    return {(r.vendor_system, r.event_id): r for r in connection.execute(found)}


def _outcomes(
    requests: Sequence[Registration],
    ours: dict[tuple[str, str], str],
    inserted: set[str],
    stored: dict[tuple[str, str], Any],
    now: datetime,
) -> list[list[Registered]]:
    """Each request's events as registered: new the first time this call stored its key; else a
    repeat (same content hash) or a reused id, against the row stored first."""
    first_hash: dict[str, str] = {}  # of each key this call stored, by id
    results: list[list[Registered]] = []
    for request in requests:
        mine: list[Registered] = []
        for item in request.events:
            key = (item.vendor_system, item.event_id)
            new_id = ours[key]
            if new_id in inserted:
                if new_id not in first_hash:
                    first_hash[new_id] = item.content_hash
                    mine.append(Registered(new_id, item.event_id, now))
                    continue
                row_id, row_hash, received = new_id, first_hash[new_id], now
            else:
                row = stored[key]
                row_id, row_hash, received = row.id, row.content_hash, aware(row.receive_time)
            same = row_hash == item.content_hash
            mine.append(Registered(row_id, item.event_id, received, replayed=same, reused=not same))
        results.append(mine)
    return results


def _add_sqlite(
    connection: Connection,
    rows: list[tuple[Any, ...]],
    audit_of_row: list[int],
    audits: list[tuple[str, bytes]],
    now: datetime,
) -> set[str]:
    """SQLite: the new events numbered from the counter and inserted, and the audit records of
    those that were new; the ids of the new events."""
    (last,) = connection.exec_driver_sql(_SQLITE_BUMP, (len(rows),)).one()
    first = int(last) - len(rows) + 1
    received = sqlite_time(now)
    added = connection.exec_driver_sql(
        _SQLITE_ADD_EVENTS,
        [(*row, received, first + offset) for offset, row in enumerate(rows)],
    )
    ids = [row[0] for row in rows]
    if added.rowcount == len(rows):
        inserted, numbers = set(ids), set(audit_of_row)
    else:  # some keys were there before: which of ours are stored?
        inserted = {str(i) for i in connection.execute(_INSERTED, {"ids": ids}).scalars()}
        numbers = {n for row_id, n in zip(ids, audit_of_row, strict=True) if row_id in inserted}
    records = [(*audit, received) for n, audit in enumerate(audits, 1) if n in numbers]
    if records:
        connection.exec_driver_sql(_SQLITE_ADD_AUDIT, records)
    return inserted


def _add_postgresql(
    connection: Connection,
    rows: list[tuple[Any, ...]],
    audit_of_row: list[int],
    audits: list[tuple[str, bytes]],
    now: datetime,
) -> set[str]:
    """PostgreSQL: the same in one statement (`_POSTGRESQL_REGISTER`); the new events' ids."""
    columns = [list(values) for values in zip(*rows, strict=True)]
    audit_ids = [audit_id for audit_id, _ in audits]
    records = [record for _, record in audits]
    values = (len(rows), *columns, audit_of_row, now, audit_ids, records)
    return {str(i) for i in connection.exec_driver_sql(_POSTGRESQL_REGISTER, values).scalars()}


def _add_alarm_steps(connection: Connection, dialect: str, steps: list[AlarmStep]) -> None:
    """New alarm steps into their alarms' state, one upsert each: each alarm's in the order they
    came, the alarms in key order (so two replicas' transactions lock their rows in one order)."""
    steps = sorted(steps, key=lambda step: (step.vendor_system, step.alarm_id))  # stable

    def at(value: datetime) -> Any:  # the driver's form of a time
        return sqlite_time(value) if dialect == "sqlite" else value

    connection.exec_driver_sql(
        _ALARM_STEP[dialect],
        [
            (
                step.vendor_system,
                step.alarm_id,
                step.municipality,
                step.patient,
                step.alert_code,
                at(step.occurred_time),
                at(step.occurred_time),
                at(step.occurred_time) if step.closes else None,
            )
            for step in steps
        ],
    )


class IngestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    # -- registration ------------------------------------------------------------------------

    async def register_many(
        self, requests: Sequence[Registration], now: datetime
    ) -> list[list[Registered]]:
        """Several requests' events in one transaction (a few statements, whatever their number):
        each request's audit record of a municipality is stored when that request registered a
        new event there."""
        ours: dict[tuple[str, str], str] = {}  # the id this call gives each new key
        rows: list[tuple[Any, ...]] = []  # each new key's values, in `_EVENT_VALUES` order
        #: Of each row, the number (from 1) of the audit record it calls for; 0 for none.
        audit_of_row: list[int] = []
        audits: list[tuple[str, bytes]] = []  # (id, record)
        steps: list[tuple[str, AlarmStep]] = []  # the alarm steps among the new keys, by row id
        for request in requests:
            numbered: dict[str, int] = {}  # this request's audit records, by municipality
            for item in request.events:
                key = (item.vendor_system, item.event_id)
                if key in ours:
                    continue
                ours[key] = row_id = new_id()
                if item.alarm is not None:
                    steps.append((row_id, item.alarm))
                municipality = item.municipality
                number = numbered.get(municipality, 0)
                if not number and municipality in request.audits:
                    audits.append((new_id(), request.audits[municipality]))
                    numbered[municipality] = number = len(audits)
                audit_of_row.append(number)
                rows.append(
                    (
                        row_id,
                        item.vendor_system,
                        item.event_id,
                        item.client_id,
                        item.content_hash,
                        municipality,
                        item.event,
                        item.traceparent,
                    )
                )
        dialect = self.db.dialect
        add = _add_postgresql if dialect == "postgresql" else _add_sqlite

        def work(connection: Connection) -> list[list[Registered]]:
            inserted = add(connection, rows, audit_of_row, audits, now) if rows else set()
            if steps:  # only the new ones: a repeated step was counted when it was new
                new_steps = [step for row_id, step in steps if row_id in inserted]
                if new_steps:
                    _add_alarm_steps(connection, dialect, new_steps)
            # A key stored before (or by another replica meanwhile): its stored row tells a
            # repeat from a reused id. Read back only for those.
            earlier = {key for key, new in ours.items() if new not in inserted}
            stored = _stored(connection, earlier) if earlier else {}
            return _outcomes(requests, ours, inserted, stored, now)

        return await self.db.write_sync(work)

    async def find(self, client_id: str, event_id: str) -> StoredEvent | None:
        """An event by its id, among those of the caller's vendor system."""
        systems = sa.select(events.c.vendor_system).where(events.c.client_id == client_id)
        async with self.db.read() as session:
            row = (
                await session.execute(
                    sa.select(events.c.id, events.c.sent, events.c.receive_time)
                    .where(events.c.event_id == event_id, events.c.vendor_system.in_(systems))
                    .limit(1)
                )
            ).one_or_none()
        return StoredEvent(row.id, bool(row.sent), aware(row.receive_time)) if row else None

    async def find_alarm(self, vendor_system: str, alarm_id: str) -> Alarm | None:
        """A vendor system's alarm, as its steps have left it; None when no step of it came."""
        wanted = {"vendor_system": vendor_system, "alarm_id": alarm_id}
        # A point read on every GetAlarmContext: one statement, on `read_sync`'s connections.
        row = await self.db.read_sync(lambda c: c.execute(_FIND_ALARM, wanted).one_or_none())
        if row is None:
            return None
        return Alarm(
            municipality=row.municipality,
            patient=row.patient,
            alert_code=row.alert_code,
            opened_time=aware(row.opened_time),
            last_step_time=aware(row.last_step_time),
            closed_time=aware(row.closed_time) if row.closed_time is not None else None,
        )

    # -- the relay ---------------------------------------------------------------------------

    async def lease_outbox(self, owner: str, now: datetime, lease: timedelta) -> bool:
        """Takes (or keeps) the relay's lease: only its holder sends, so order holds."""

        def work(connection: Connection) -> bool:
            connection.execute(_LEASE_ROW[self.db.dialect])
            taken = connection.execute(
                _TAKE_LEASE, {"holder": owner, "now": now, "held_until": now + lease}
            )
            return taken.rowcount > 0

        return await self.db.write_sync(work)

    async def unsent(self, limit: int, after: str = "") -> list[Outgoing]:
        """The oldest unsent events of each municipality that has any, a fair share of `limit`
        each, in position order (each municipality's, so each patient's, order kept). When more
        municipalities wait than `limit`, those after `after` (in order, wrapping) go first."""
        async with self.db.read() as session:
            waiting = list((await session.execute(_WAITING[self.db.dialect])).scalars())
            if not waiting:
                return []
            waiting = [m for m in waiting if m > after] + [m for m in waiting if m <= after]
            chosen = waiting[:limit]
            share = max(1, limit // len(chosen))
            oldest = [
                sa.select(
                    sa.select(*_OUTGOING)
                    .where(events.c.sent == sa.false(), events.c.municipality == m)
                    .order_by(events.c.position)
                    .limit(share)
                    .subquery()
                )
                for m in chosen
            ]
            rows = await session.execute(sa.union_all(*oldest))
            found = [
                Outgoing(
                    r.id,
                    r.vendor_system,
                    r.client_id,
                    r.event,
                    r.traceparent,
                    aware(r.receive_time),
                    r.position,
                    r.municipality,
                )
                for r in rows
            ]
        return sorted(found, key=lambda e: e.position)

    async def mark_sent(self, ids: Sequence[str]) -> None:
        wanted = {"ids": list(ids)}
        await self.db.write_sync(lambda connection: connection.execute(_MARK_SENT, wanted))

    # -- the audit outbox --------------------------------------------------------------------

    async def audit_pending(self, limit: int) -> list[tuple[str, bytes]]:
        """The audit records still owed to the audit log (serialized), oldest first, by key."""
        async with self.db.read() as session:
            rows = await session.execute(
                sa.select(audit_outbox.c.id, audit_outbox.c.record)
                .order_by(audit_outbox.c.create_time)
                .limit(limit)
            )
            return [(r.id, r.record) for r in rows]

    async def audit_sent(self, ids: Sequence[str]) -> None:
        """Forgets records the audit log has committed."""

        wanted = {"ids": list(ids)}
        await self.db.write_sync(lambda connection: connection.execute(_AUDIT_SENT, wanted))
