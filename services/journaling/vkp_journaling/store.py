"""The journaling service's storage: journal entries, per-patient queues, leases and states.

An entry is one event on its way into the patient's record. Each patient has a queue row that
numbers the entries as they are taken (the per-patient sequence: the queue row's counter, bumped
under its row lock, so two replicas never hand out one number twice) and that a worker leases to
deliver the queue's head — the lowest sequence still waiting. A lease expires: after a crash,
another worker takes the queue over, and the conditional creates of the note make the repeat
harmless. Alarm steps are stored but never a head: they wait for the alarm handling logs and
never hold up the patient's other notes. A dead entry leaves its queue. (The rules are the
domain's, `vkp_journaling.domain.entry`; the tables are in `vkp_journaling.tables`.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vkp_journaling.domain.entry import (
    ALARM_STEP,
    WAITING,
    Enqueued,
    Entry,
    EntryState,
    NewEntry,
    Page,
)
from vkp_journaling.tables import EPOCH, MIGRATIONS, VERSION_TABLE, entries, queues
from vkp_lib import paging
from vkp_lib.db import Database, aware, insert, rowcount

DEFAULT_PAGE_SIZE = 50
_WAITING = [state.value for state in WAITING]
_FIELDS = tuple(Entry.__dataclass_fields__)


def _entry(row: sa.Row[Any]) -> Entry:
    m = row._mapping
    values: dict[str, Any] = {
        name: (aware(m[name]) if isinstance(m[name], datetime) else m[name]) for name in _FIELDS
    }
    values["state"] = EntryState(values["state"])
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
                entry_id: EntryState(state)
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
                        state=EntryState.QUEUED.value,
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
                known[item.entry_id] = EntryState.QUEUED
                results.append(Enqueued(item.entry_id, created, EntryState.QUEUED))
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
                entries.c.state.in_(_WAITING),
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
                        entries.c.state.in_(_WAITING),
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
                .where(entries.c.entry_id == entry_id, entries.c.state.in_(_WAITING), leased)
                .values(**values)
            )
            return rowcount(done) > 0

        return await self.db.write(work)

    async def journaled(self, entry: Entry, owner: str, now: datetime, note: str) -> bool:
        return await self._set(
            entry.entry_id,
            owner,
            {
                "state": EntryState.JOURNALED.value,
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
                "state": EntryState.RETRYING.value,
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
                "state": EntryState.DEAD.value,
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

    async def get(self, entry_id: str) -> Entry | None:
        async with self.db.read() as session:
            row = (
                await session.execute(sa.select(entries).where(entries.c.entry_id == entry_id))
            ).one_or_none()
        return None if row is None else _entry(row)

    async def page(
        self,
        municipality: str,
        *,
        patient: str = "",
        state: EntryState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page:
        """Entries of a municipality: by patient in queue order, else newest first."""
        filters = json.dumps([municipality, patient, state.value if state is not None else ""])
        after = paging.position(page_token, filters, lambda parts: (parts[0], parts[1]))
        size = page_size or DEFAULT_PAGE_SIZE
        query = sa.select(entries).where(entries.c.municipality == municipality)
        if state is not None:
            query = query.where(entries.c.state == state.value)
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

    async def requeue(
        self, entry_id: str, now: datetime, *, states: Sequence[EntryState]
    ) -> EntryState | None:
        """Puts the entry back in its patient's queue, at its place, if it is in one of `states`;
        the state it was found in (None: no such entry)."""

        async def work(session: AsyncSession) -> EntryState | None:
            found = (
                await session.execute(
                    sa.select(entries.c.state).where(entries.c.entry_id == entry_id)
                )
            ).scalar_one_or_none()
            if found is None:
                return None
            state = EntryState(found)
            if state in states:
                await session.execute(
                    sa.update(entries)
                    .where(entries.c.entry_id == entry_id, entries.c.state == found)
                    .values(
                        state=EntryState.QUEUED.value,
                        attempts=0,
                        next_attempt_time=None,
                        last_error_reason="",
                        update_time=now,
                    )
                )
            return state

        return await self.db.write(work)
