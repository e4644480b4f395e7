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
a group's statements run together, made once at import.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from vkp_ingest.domain.model import Outgoing, Registered, Registration, StoredEvent
from vkp_lib.db import Database, aware, insert

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

#: Takes `count` positions; returns the last.
_BUMP = (
    sa.update(counter)
    .where(counter.c.id == 1)
    .values(position=counter.c.position + sa.bindparam("count"))
    .returning(counter.c.position)
)
#: New events, and the ids of those stored (a key stored before is left alone).
_ADD_EVENTS = {
    dialect: insert(dialect, events)
    .on_conflict_do_nothing(index_elements=["vendor_system", "event_id"])
    .returning(events.c.id)
    for dialect in ("sqlite", "postgresql")
}
_ADD_AUDIT = sa.insert(audit_outbox)
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
        incoming = [item for request in requests for item in request.events]
        ours: dict[tuple[str, str], str] = {}  # the id this call gives each new key
        rows: list[dict[str, object]] = []
        for item in incoming:
            key = (item.vendor_system, item.event_id)
            if key in ours:
                continue
            ours[key] = str(uuid.uuid4())
            rows.append(
                {
                    "id": ours[key],
                    "vendor_system": item.vendor_system,
                    "event_id": item.event_id,
                    "client_id": item.client_id,
                    "content_hash": item.content_hash,
                    "municipality": item.municipality,
                    "event": item.event,
                    "traceparent": item.traceparent,
                    "receive_time": now,
                    "sent": False,
                }
            )
        add = self._add_events

        def work(connection: Connection) -> list[list[Registered]]:
            inserted = add(connection, rows)
            # A key stored before (or by another replica meanwhile): its stored row tells a
            # repeat from a reused id. Read back only for those.
            earlier = {key for key, new_id in ours.items() if new_id not in inserted}
            stored = _stored(connection, earlier) if earlier else {}
            results = _outcomes(requests, ours, inserted, stored, now)
            records = [
                {"id": str(uuid.uuid4()), "record": request.audits[m], "create_time": now}
                for request, mine in zip(requests, results, strict=True)
                for m in sorted(
                    {i.municipality for i, r in zip(request.events, mine, strict=True) if r.new}
                )
                if m in request.audits
            ]
            if records:
                connection.execute(_ADD_AUDIT, records)
            return results

        return await self.db.write_sync(work)

    def _add_events(self, connection: Connection, rows: list[dict[str, object]]) -> set[str]:
        """Inserts the rows that are new (ON CONFLICT DO NOTHING), numbered from the counter
        (in its row lock, so in commit order); the ids of those inserted."""
        if not rows:
            return set()
        last = int(connection.execute(_BUMP, {"count": len(rows)}).scalar_one())
        first = last - len(rows) + 1
        for offset, row in enumerate(rows):
            row["position"] = first + offset
        statement = _ADD_EVENTS[self.db.dialect]
        return {str(i) for i in connection.execute(statement, rows).scalars()}

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
