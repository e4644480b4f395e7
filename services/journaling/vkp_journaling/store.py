"""The journaling service's storage: journal entries, per-patient queues, leases and states.

An entry is one event on its way into the patient's record. Each patient has a queue row that
numbers the entries as they are taken (the per-patient sequence: the queue row's counter, bumped
under its row lock, so two replicas never hand out one number twice) and that a worker leases to
deliver the queue's head — the lowest sequence still waiting. A lease expires: after a crash,
another worker takes the queue over, and the conditional creates of the note make the repeat
harmless. Alarm steps are stored but never a head: they wait for the alarm handling logs and
never hold up the patient's other notes. A dead entry leaves its queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_lib import paging
from vkp_lib.db import Database, aware, insert, rowcount
from vkp_lib.errors import FailedPrecondition, NotFound

MIGRATIONS = "vkp_journaling.migrations"
VERSION_TABLE = "alembic_version_journaling"
DEFAULT_PAGE_SIZE = 50
ALARM_STEP = "alarm_step"
#: States an entry waits in; the others are final (JOURNALED, DEAD) until RetryEntry.
WAITING = ("QUEUED", "RETRYING")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = sa.MetaData()
entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("municipality", sa.String(9), nullable=False),
    sa.Column("patient", sa.String(11), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("service_code", sa.String(8), nullable=False),
    sa.Column("vendor_system", sa.String(300), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("traceparent", sa.String(55), nullable=False),
    sa.Column("occurred_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error_reason", sa.String(100), nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("journaled_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("note_identifier", sa.String(100), nullable=False),
    sa.Column("audit_pending", sa.Boolean, nullable=False),
)
queues = sa.Table(
    "journal_queues",
    metadata,
    sa.Column("municipality", sa.String(9), primary_key=True),
    sa.Column("patient", sa.String(11), primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class NewEntry:
    entry_id: str
    municipality: str
    patient: str
    kind: str
    event_id: str
    service_code: str
    vendor_system: str
    client_id: str
    event: bytes
    traceparent: str
    occurred_time: datetime
    receive_time: datetime


@dataclass(frozen=True)
class Entry:
    entry_id: str
    municipality: str
    patient: str
    sequence: int
    kind: str
    event_id: str
    service_code: str
    vendor_system: str
    client_id: str
    event: bytes
    traceparent: str
    occurred_time: datetime
    receive_time: datetime
    state: str
    attempts: int
    next_attempt_time: datetime | None
    last_error_reason: str
    create_time: datetime
    update_time: datetime
    journaled_time: datetime | None
    note_identifier: str


@dataclass(frozen=True)
class Enqueued:
    entry_id: str
    created: bool
    state: str


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_page_token: str


def _entry(row: sa.Row[Any]) -> Entry:
    m = row._mapping
    values: dict[str, Any] = {
        name: (aware(m[name]) if isinstance(m[name], datetime) else m[name])
        for name in Entry.__dataclass_fields__
    }
    return Entry(**values)


class JournalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    # -- Enqueue -------------------------------------------------------------------------------

    async def enqueue(self, items: Sequence[NewEntry], now: datetime) -> list[Enqueued]:
        """Stores the entries that are new, numbering each in its patient's queue; a repeat
        changes nothing (INSERT … ON CONFLICT DO NOTHING: it never fails the others)."""

        async def work(session: AsyncSession) -> list[Enqueued]:
            ids = [item.entry_id for item in items]
            known = {
                entry_id: state
                for entry_id, state in await session.execute(
                    sa.select(entries.c.entry_id, entries.c.state).where(
                        entries.c.entry_id.in_(ids)
                    )
                )
            }
            results: list[Enqueued] = []
            for item in items:
                if item.entry_id in known:
                    results.append(Enqueued(item.entry_id, False, known[item.entry_id]))
                    continue
                sequence = await self._next_sequence(session, item.municipality, item.patient)
                inserted = await session.execute(
                    insert(self.db.dialect, entries)
                    .values(
                        entry_id=item.entry_id,
                        municipality=item.municipality,
                        patient=item.patient,
                        sequence=sequence,
                        kind=item.kind,
                        event_id=item.event_id,
                        service_code=item.service_code,
                        vendor_system=item.vendor_system,
                        client_id=item.client_id,
                        event=item.event,
                        traceparent=item.traceparent,
                        occurred_time=item.occurred_time,
                        receive_time=item.receive_time,
                        state="QUEUED",
                        attempts=0,
                        next_attempt_time=None,
                        last_error_reason="",
                        create_time=now,
                        update_time=now,
                        journaled_time=None,
                        note_identifier="",
                        audit_pending=False,
                    )
                    .on_conflict_do_nothing(index_elements=["entry_id"])
                )
                created = rowcount(inserted) > 0
                known[item.entry_id] = "QUEUED"
                results.append(Enqueued(item.entry_id, created, "QUEUED"))
            return results

        return await self.db.write(work)

    async def _next_sequence(self, session: AsyncSession, municipality: str, patient: str) -> int:
        await session.execute(
            insert(self.db.dialect, queues)
            .values(
                municipality=municipality,
                patient=patient,
                last_sequence=0,
                lease_owner="",
                lease_until=EPOCH,
            )
            .on_conflict_do_nothing(index_elements=["municipality", "patient"])
        )
        bumped = await session.execute(
            sa.update(queues)
            .where(queues.c.municipality == municipality, queues.c.patient == patient)
            .values(last_sequence=queues.c.last_sequence + 1)
            .returning(queues.c.last_sequence)
        )
        return int(bumped.scalar_one())

    # -- delivery ------------------------------------------------------------------------------

    def _head(self) -> sa.Select[tuple[datetime]]:
        """The due time of a queue's head (correlated to `queues`)."""
        due = sa.func.coalesce(entries.c.next_attempt_time, EPOCH)
        return (
            sa.select(due)
            .where(
                entries.c.municipality == queues.c.municipality,
                entries.c.patient == queues.c.patient,
                entries.c.state.in_(WAITING),
                entries.c.kind != ALARM_STEP,
            )
            .order_by(entries.c.sequence)
            .limit(1)
        )

    async def any_due(self, now: datetime, *, paused: Sequence[str] = ()) -> bool:
        """Whether some queue's head is due and unleased: a read, so idle workers cost no write."""
        head_due = self._head().scalar_subquery()
        query = sa.select(queues.c.patient).where(queues.c.lease_until < now, head_due <= now)
        if paused:
            query = query.where(queues.c.municipality.not_in(list(paused)))
        async with self.db.read() as session:
            return (await session.execute(query.limit(1))).first() is not None

    async def claim(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        paused: Sequence[str] = (),
    ) -> tuple[str, str] | None:
        """Leases a patient queue whose head is due, outside the paused municipalities."""

        async def work(session: AsyncSession) -> tuple[str, str] | None:
            head_due = self._head().scalar_subquery()
            query = (
                sa.select(queues.c.municipality, queues.c.patient)
                .where(queues.c.lease_until < now, head_due <= now)
                .order_by(head_due)
                .limit(1)
                .with_for_update(skip_locked=True, of=queues)
            )
            if paused:
                query = query.where(queues.c.municipality.not_in(list(paused)))
            row = (await session.execute(query)).one_or_none()
            if row is None:
                return None
            await session.execute(
                sa.update(queues)
                .where(queues.c.municipality == row.municipality, queues.c.patient == row.patient)
                .values(lease_owner=owner, lease_until=now + lease)
            )
            return str(row.municipality), str(row.patient)

        return await self.db.write(work)

    async def head(self, municipality: str, patient: str, now: datetime) -> Entry | None:
        """The entry to deliver next for a patient, if it is due."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    sa.select(entries)
                    .where(
                        entries.c.municipality == municipality,
                        entries.c.patient == patient,
                        entries.c.state.in_(WAITING),
                        entries.c.kind != ALARM_STEP,
                    )
                    .order_by(entries.c.sequence)
                    .limit(1)
                )
            ).one_or_none()
        if row is None:
            return None
        entry = _entry(row)
        if entry.next_attempt_time is not None and entry.next_attempt_time > now:
            return None
        return entry

    async def release(self, municipality: str, patient: str, owner: str) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                sa.update(queues)
                .where(
                    queues.c.municipality == municipality,
                    queues.c.patient == patient,
                    queues.c.lease_owner == owner,
                )
                .values(lease_owner="", lease_until=EPOCH)
            )

        await self.db.write(work)

    async def _set(self, entry_id: str, owner: str, values: dict[str, object]) -> bool:
        """Updates a waiting entry while `owner` still holds its queue's lease."""

        async def work(session: AsyncSession) -> bool:
            leased = (
                sa.select(queues.c.patient)
                .where(
                    queues.c.municipality == entries.c.municipality,
                    queues.c.patient == entries.c.patient,
                    queues.c.lease_owner == owner,
                )
                .exists()
            )
            done = await session.execute(
                sa.update(entries)
                .where(entries.c.entry_id == entry_id, entries.c.state.in_(WAITING), leased)
                .values(**values)
            )
            return rowcount(done) > 0

        return await self.db.write(work)

    async def journaled(self, entry: Entry, owner: str, now: datetime, note: str) -> bool:
        return await self._set(
            entry.entry_id,
            owner,
            {
                "state": "JOURNALED",
                "journaled_time": now,
                "update_time": now,
                "note_identifier": note,
                "attempts": entry.attempts + 1,
                "next_attempt_time": None,
                "audit_pending": True,
            },
        )

    async def retrying(
        self, entry: Entry, owner: str, now: datetime, at: datetime, reason: str
    ) -> bool:
        return await self._set(
            entry.entry_id,
            owner,
            {
                "state": "RETRYING",
                "attempts": entry.attempts + 1,
                "next_attempt_time": at,
                "last_error_reason": reason,
                "update_time": now,
            },
        )

    async def dead(self, entry: Entry, owner: str, now: datetime, reason: str) -> bool:
        return await self._set(
            entry.entry_id,
            owner,
            {
                "state": "DEAD",
                "attempts": entry.attempts + 1,
                "next_attempt_time": None,
                "last_error_reason": reason,
                "update_time": now,
            },
        )

    # -- audit outbox --------------------------------------------------------------------------

    async def audit_pending(self, limit: int = 200) -> list[Entry]:
        async with self.db.read() as session:
            rows = await session.execute(
                sa.select(entries).where(entries.c.audit_pending.is_(True)).limit(limit)
            )
            return [_entry(r) for r in rows]

    async def audited(self, entry_ids: Sequence[str]) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                sa.update(entries)
                .where(entries.c.entry_id.in_(list(entry_ids)))
                .values(audit_pending=False)
            )

        await self.db.write(work)

    # -- reading and operators -----------------------------------------------------------------

    async def get(self, entry_id: str) -> Entry:
        async with self.db.read() as session:
            row = (
                await session.execute(sa.select(entries).where(entries.c.entry_id == entry_id))
            ).one_or_none()
        if row is None:
            raise NotFound("ENTRY_NOT_FOUND", "no such entry")
        return _entry(row)

    async def page(
        self,
        municipality: str,
        *,
        patient: str = "",
        state: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page:
        """Entries of a municipality: by patient in queue order, else newest first."""
        filters = json.dumps([municipality, patient, state])
        after = paging.position(page_token, filters, lambda parts: (parts[0], parts[1]))
        size = page_size or DEFAULT_PAGE_SIZE
        query = sa.select(entries).where(entries.c.municipality == municipality)
        if state:
            query = query.where(entries.c.state == state)
        if patient:
            query = query.where(entries.c.patient == patient).order_by(entries.c.sequence)
            if after is not None:
                query = query.where(entries.c.sequence > int(after[1]))
        else:
            query = query.order_by(entries.c.create_time.desc(), entries.c.entry_id.desc())
            if after is not None:
                position = datetime.fromisoformat(after[0])
                query = query.where(
                    sa.or_(
                        entries.c.create_time < position,
                        sa.and_(entries.c.create_time == position, entries.c.entry_id < after[1]),
                    )
                )
        async with self.db.read() as session:
            rows = list(await session.execute(query.limit(size + 1)))
        found = [_entry(r) for r in rows[:size]]
        if len(rows) <= size:
            return Page(found, "")
        last = found[-1]
        mark = (
            ("", str(last.sequence)) if patient else (last.create_time.isoformat(), last.entry_id)
        )
        return Page(found, paging.page_token(mark, filters))

    async def retry(self, entry_id: str, now: datetime) -> Entry:
        """Puts a dead entry back in its patient's queue, at its place."""

        async def work(session: AsyncSession) -> None:
            row = (
                await session.execute(
                    sa.select(entries.c.state).where(entries.c.entry_id == entry_id)
                )
            ).one_or_none()
            if row is None:
                raise NotFound("ENTRY_NOT_FOUND", "no such entry")
            if row.state != "DEAD":
                raise FailedPrecondition("ENTRY_NOT_DEAD", "only a dead letter can be retried")
            await session.execute(
                sa.update(entries)
                .where(entries.c.entry_id == entry_id)
                .values(
                    state="QUEUED",
                    attempts=0,
                    next_attempt_time=None,
                    last_error_reason="",
                    update_time=now,
                )
            )

        await self.db.write(work)
        return await self.get(entry_id)
