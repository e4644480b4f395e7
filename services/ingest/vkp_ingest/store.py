"""The ingest service's storage: received events (their own outbox toward journaling), the
idempotency of event ids, and the audit outbox.

An event is unique per (vendor system, event id): `INSERT … ON CONFLICT DO NOTHING`, then the
stored content hash decides between a repeat (the original receipt) and a reused id; a duplicate
never rolls back the other events of a grouped commit. Each new event takes the next position
from a one-row counter in its own transaction, so positions are in commit order across replicas;
the relay sends in position order, which keeps each patient's events in order. One relay at a time
holds the outbox (a lease row), whichever replica it runs in.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_ingest.domain.model import Incoming, Outgoing, Registered, Registration, StoredEvent
from vkp_lib.db import Database, aware, insert, rowcount

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


class IngestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    # -- registration ------------------------------------------------------------------------

    async def register_many(
        self, requests: Sequence[Registration], now: datetime
    ) -> list[list[Registered]]:
        """Several requests' events in one transaction: each request's audit record of a
        municipality is stored when that request registered a new event there."""
        incoming = [item for request in requests for item in request.events]

        async def work(session: AsyncSession) -> list[Registered]:
            # Per vendor system, so SQLite searches the unique index (a row-value IN scans).
            by_system: dict[str, list[str]] = {}
            for i in incoming:
                by_system.setdefault(i.vendor_system, []).append(i.event_id)
            keys = sa.or_(
                *(
                    sa.and_(events.c.vendor_system == system, events.c.event_id.in_(ids))
                    for system, ids in by_system.items()
                )
            )
            found = sa.select(
                events.c.id,
                events.c.vendor_system,
                events.c.event_id,
                events.c.content_hash,
                events.c.receive_time,
            ).where(keys)
            known = {(r.vendor_system, r.event_id) for r in await session.execute(found)}
            fresh: dict[tuple[str, str], Incoming] = {}
            for item in incoming:
                if (item.vendor_system, item.event_id) not in known:
                    fresh.setdefault((item.vendor_system, item.event_id), item)
            ours: dict[str, str] = {}  # the id this call gave each new event
            if fresh:
                last = await self._next_position(session, len(fresh))
                rows = []
                for offset, (key, item) in enumerate(fresh.items()):
                    new_id = str(uuid.uuid4())
                    ours[new_id] = key[1]
                    rows.append(
                        {
                            "id": new_id,
                            "vendor_system": item.vendor_system,
                            "event_id": item.event_id,
                            "client_id": item.client_id,
                            "content_hash": item.content_hash,
                            "municipality": item.municipality,
                            "event": item.event,
                            "traceparent": item.traceparent,
                            "receive_time": now,
                            "position": last - len(fresh) + 1 + offset,
                            "sent": False,
                        }
                    )
                # A concurrent writer (another replica) may have stored one meanwhile: nothing
                # then, and the hash below tells a repeat from a reused id.
                await session.execute(
                    insert(self.db.dialect, events).on_conflict_do_nothing(
                        index_elements=["vendor_system", "event_id"]
                    ),
                    rows,
                )
            stored = {(r.vendor_system, r.event_id): r for r in await session.execute(found)}
            results: list[Registered] = []
            seen: set[str] = set()
            for item in incoming:
                row = stored[(item.vendor_system, item.event_id)]
                new = row.id in ours and row.id not in seen
                seen.add(row.id)
                if new:
                    results.append(Registered(row.id, item.event_id, now))
                    continue
                same = row.content_hash == item.content_hash
                results.append(
                    Registered(
                        row.id,
                        item.event_id,
                        aware(row.receive_time),
                        replayed=same,
                        reused=not same,
                    )
                )
            records = []
            position = 0
            for request in requests:
                items = request.events
                mine = results[position : position + len(items)]
                position += len(items)
                created = {i.municipality for i, r in zip(items, mine, strict=True) if r.new}
                records += [
                    {"id": str(uuid.uuid4()), "record": request.audits[m], "create_time": now}
                    for m in sorted(created)
                    if m in request.audits
                ]
            if records:
                await session.execute(sa.insert(audit_outbox), records)
            return results

        flat = await self.db.write(work)
        split, position = [], 0
        for request in requests:
            split.append(flat[position : position + len(request.events)])
            position += len(request.events)
        return split

    async def _next_position(self, session: AsyncSession, count: int) -> int:
        """Takes `count` positions; returns the last (in the row lock, so in commit order)."""
        bumped = await session.execute(
            sa.update(counter)
            .where(counter.c.id == 1)
            .values(position=counter.c.position + count)
            .returning(counter.c.position)
        )
        return int(bumped.scalar_one())

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

        async def work(session: AsyncSession) -> bool:
            await session.execute(
                insert(self.db.dialect, relay_lease)
                .values(id=1, owner="", until=EPOCH)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            taken = await session.execute(
                sa.update(relay_lease)
                .where(
                    relay_lease.c.id == 1,
                    sa.or_(relay_lease.c.owner == owner, relay_lease.c.until < now),
                )
                .values(owner=owner, until=now + lease)
            )
            return rowcount(taken) > 0

        return await self.db.write(work)

    async def unsent(self, limit: int) -> list[Outgoing]:
        async with self.db.read() as session:
            rows = await session.execute(
                sa.select(events)
                .where(events.c.sent.is_(False))
                .order_by(events.c.position)
                .limit(limit)
            )
            return [
                Outgoing(
                    r.id,
                    r.vendor_system,
                    r.client_id,
                    r.event,
                    r.traceparent,
                    aware(r.receive_time),
                    r.position,
                )
                for r in rows
            ]

    async def mark_sent(self, ids: Sequence[str]) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                sa.update(events).where(events.c.id.in_(list(ids))).values(sent=True)
            )

        await self.db.write(work)

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

        async def work(session: AsyncSession) -> None:
            await session.execute(sa.delete(audit_outbox).where(audit_outbox.c.id.in_(list(ids))))

        await self.db.write(work)
