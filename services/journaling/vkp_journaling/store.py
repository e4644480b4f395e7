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

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from vkp_journaling import tables
from vkp_journaling.domain import pull
from vkp_journaling.domain.alarm import (
    ALARM_LOG,
    AlarmKey,
    AlarmWindows,
    batch_due,
    log_entry_id,
    pack_steps,
)
from vkp_journaling.domain.entry import (
    ALARM_STEP,
    WAITING,
    Change,
    Claim,
    Enqueued,
    Entry,
    EntryState,
    NewEntry,
    Page,
    Settled,
)
from vkp_journaling.tables import (
    ALARM_STEPS,
    EPOCH,
    MIGRATIONS,
    VERSION_TABLE,
    WAITING_NOTE,
    alarms,
    entries,
    municipalities,
    queues,
)
from vkp_lib import paging
from vkp_lib.db import Database, aware, insert, rowcount
from vkp_lib.errors import VkpError

DEFAULT_PAGE_SIZE = 50
_WAITING = [state.value for state in WAITING]
#: The entry's fields that are columns (closes_alarm is not stored: the alarm's due time is).
_FIELDS = tuple(name for name in Entry.__dataclass_fields__ if name in entries.c)


def _entry(row: sa.Row[Any]) -> Entry:
    m = row._mapping
    values: dict[str, Any] = {
        name: (aware(m[name]) if isinstance(m[name], datetime) else m[name]) for name in _FIELDS
    }
    values["state"] = EntryState(values["state"])
    return Entry(**values)


def _due(entry: Entry, now: datetime) -> bool:
    return entry.next_attempt_time is None or entry.next_attempt_time <= now


#: Each municipality's earliest due time (NULL: nothing to deliver): one index probe each.
_DUES = sa.select(
    municipalities.c.municipality,
    sa.select(sa.func.min(queues.c.due_time))
    .where(
        queues.c.municipality == municipalities.c.municipality,
        queues.c.due_time.is_not(None),
    )
    .scalar_subquery(),
)
#: A municipality's due queues, due the longest first, that no other transaction holds.
_DUE_QUEUES = (
    sa.select(queues.c.patient)
    .where(
        queues.c.municipality == sa.bindparam("k_municipality"),
        queues.c.due_time <= sa.bindparam("k_now", type_=sa.DateTime(timezone=True)),
    )
    .order_by(queues.c.due_time)
    .limit(sa.bindparam("k_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_QUEUE = (
    queues.c.municipality == sa.bindparam("k_municipality"),
    queues.c.patient == sa.bindparam("k_patient"),
)
_MINE = (*_QUEUE, queues.c.lease_owner == sa.bindparam("k_owner"))
_LEASE = (
    sa.update(queues)
    .where(*_QUEUE)
    .values(
        lease_owner=sa.bindparam("k_owner"),
        lease_until=sa.bindparam("k_until", type_=sa.DateTime(timezone=True)),
        due_time=sa.bindparam("k_until", type_=sa.DateTime(timezone=True)),
    )
)
#: A patient's waiting notes in queue order (the partial index of heads): the head and whether
#: another waits; the head alone.
_WAITING_NOTES = (
    sa.select(entries)
    .where(
        entries.c.municipality == sa.bindparam("k_municipality"),
        entries.c.patient == sa.bindparam("k_patient"),
        WAITING_NOTE,
    )
    .order_by(entries.c.sequence)
)
_NEXT_NOTES = _WAITING_NOTES.limit(sa.bindparam("k_notes", type_=sa.Integer))
_HEAD = _WAITING_NOTES.limit(1)
#: The row lock of a queue this worker holds (an Enqueue committed before it is then seen).
_LOCK_MINE = sa.select(queues.c.patient).where(*_MINE).with_for_update()
#: A queue given up: due again when its head is, NULL when nothing waits.
_RELEASE = (
    sa.update(queues)
    .where(*_MINE)
    .values(
        lease_owner="",
        lease_until=EPOCH,
        due_time=sa.select(sa.func.coalesce(entries.c.next_attempt_time, entries.c.create_time))
        .where(
            entries.c.municipality == sa.bindparam("k_municipality"),
            entries.c.patient == sa.bindparam("k_patient"),
            WAITING_NOTE,
        )
        .order_by(entries.c.sequence)
        .limit(1)
        .scalar_subquery(),
    )
)
#: A waiting entry changed, while `k_owner` still holds its queue's lease. The queue is named by
#: parameters, not correlated with the entry's row: a correlated EXISTS lets PostgreSQL plan the
#: UPDATE as a join driven from the queue, and the generic plan it caches for the prepared
#: statement while the tables are still empty then scans the municipality's entries by its
#: listing index on every settle (seen: ~100 ms per UPDATE with 30,000 entries). Uncorrelated,
#: it is one primary-key probe of each table whatever the statistics.
_LEASED = (
    sa.select(queues.c.patient)
    .where(
        queues.c.municipality == sa.bindparam("k_municipality"),
        queues.c.patient == sa.bindparam("k_patient"),
        queues.c.lease_owner == sa.bindparam("k_owner"),
    )
    .exists()
)
_CHANGED = {
    EntryState.JOURNALED: ("journaled_time", "note_identifier", "audit_pending"),
    EntryState.RETRYING: ("last_error_reason",),
    EntryState.DEAD: ("last_error_reason",),
}
_SETTLE = {
    state: sa.update(entries)
    .where(entries.c.entry_id == sa.bindparam("k_entry_id"), entries.c.state.in_(_WAITING), _LEASED)
    .values(
        {
            name: sa.bindparam(f"v_{name}", type_=entries.c[name].type)
            for name in ("state", "attempts", "next_attempt_time", "update_time", *changed)
        }
    )
    for state, changed in _CHANGED.items()
}


def _change_values(entry: Entry, now: datetime, change: Change) -> dict[str, Any]:
    """The bound values of the change's `_SETTLE` statement."""
    values: dict[str, Any] = {
        "v_state": change.state.value,
        "v_attempts": entry.attempts + 1,
        "v_next_attempt_time": change.at if change.state is EntryState.RETRYING else None,
        "v_update_time": now,
    }
    if change.state is EntryState.JOURNALED:
        values["v_journaled_time"] = now
        values["v_note_identifier"] = change.note
        values["v_audit_pending"] = True
    else:
        values["v_last_error_reason"] = change.reason
    return values


def _next_notes(connection: sa.Connection, place: dict[str, str], count: int) -> list[Entry]:
    """Up to `count` of a patient's waiting notes, in queue order."""
    return [_entry(row) for row in connection.execute(_NEXT_NOTES, {**place, "k_notes": count})]


def _due_notes(waiting: list[Entry], now: datetime) -> list[Entry]:
    """The notes to deliver now: the waiting ones up to the first that is not due yet."""
    due: list[Entry] = []
    for entry in waiting:
        if not _due(entry, now):
            break
        due.append(entry)
    return due


def _release(connection: sa.Connection, municipality: str, patient: str, owner: str) -> None:
    """Gives a queue up (if `owner` holds it): the row lock first, then the head, so an Enqueue
    committed meanwhile is seen."""
    mine = {"k_municipality": municipality, "k_patient": patient, "k_owner": owner}
    if connection.execute(_LOCK_MINE, mine).first() is not None:
        connection.execute(_RELEASE, mine)


def _taking_turns(due: list[list[tuple[str, str]]], limit: int) -> list[tuple[str, str]]:
    """Up to `limit` queues, one of each municipality's (in order) in turn."""
    picked: list[tuple[str, str]] = []
    for turn in range(limit):
        for queued in due:
            if turn < len(queued) and len(picked) < limit:
                picked.append(queued[turn])
    return picked


#: The statements of Enqueue, made once (per dialect where the upsert differs).
_DIALECTS = ("sqlite", "postgresql")
_STORED_STATES = sa.select(entries.c.entry_id, entries.c.state).where(
    entries.c.entry_id.in_(sa.bindparam("k_ids", expanding=True))
)
_ADD_MUNICIPALITIES = {
    dialect: insert(dialect, municipalities).on_conflict_do_nothing(index_elements=["municipality"])
    for dialect in _DIALECTS
}
_ADD_QUEUES = {
    dialect: insert(dialect, queues).on_conflict_do_nothing(
        index_elements=["municipality", "patient"]
    )
    for dialect in _DIALECTS
}
#: A municipality's queues of these patients, locked in key order, with their counters.
_LOCK_QUEUES = (
    sa.select(queues.c.patient, queues.c.last_sequence)
    .where(
        queues.c.municipality == sa.bindparam("k_municipality"),
        queues.c.patient.in_(sa.bindparam("k_patients", expanding=True)),
    )
    .order_by(queues.c.patient)
    .with_for_update()
)
_BUMP_QUEUE = (
    sa.update(queues)
    .where(*_QUEUE)
    .values(
        last_sequence=sa.bindparam("k_last"),
        due_time=sa.func.coalesce(
            queues.c.due_time, sa.bindparam("k_due", type_=sa.DateTime(timezone=True))
        ),
    )
)
_ADD_ENTRIES = {
    dialect: insert(dialect, entries)
    .on_conflict_do_nothing(index_elements=["entry_id"])
    .returning(entries.c.entry_id)
    for dialect in _DIALECTS
}
#: The queues a store remembers to exist (rows never deleted), at most.
KNOWN_QUEUES = 200_000


def _store_new(
    connection: sa.Connection,
    dialect: str,
    fresh: Sequence[NewEntry],
    now: datetime,
    unknown: set[tuple[str, str]],
) -> set[str]:
    """Inserts entries not stored yet (one per id), numbered in their patients' queues; the ids
    inserted (another replica may have stored one meanwhile). The `unknown` queues (and their
    municipalities) are made first, when they do not exist yet; the queue rows are locked in key
    order, their counters bumped once each, and a queue with nothing to deliver made due."""
    by_queue: dict[tuple[str, str], list[NewEntry]] = {}
    for item in fresh:
        by_queue.setdefault((item.municipality, item.patient), []).append(item)
    keys = sorted(by_queue)
    if new_queues := sorted(unknown.intersection(keys)):
        connection.execute(
            _ADD_MUNICIPALITIES[dialect],
            [{"municipality": m} for m in sorted({m for m, _ in new_queues})],
        )
        connection.execute(
            _ADD_QUEUES[dialect],
            [
                {
                    "municipality": m,
                    "patient": p,
                    "last_sequence": 0,
                    "lease_owner": "",
                    "lease_until": EPOCH,
                    "due_time": None,
                }
                for m, p in new_queues
            ],
        )
    by_municipality: dict[str, list[str]] = {}
    for m, p in keys:
        by_municipality.setdefault(m, []).append(p)
    last: dict[tuple[str, str], int] = {}
    for m, patients in by_municipality.items():  # in key order: keys are sorted
        found = connection.execute(_LOCK_QUEUES, {"k_municipality": m, "k_patients": patients})
        last.update(((m, str(p)), int(n)) for p, n in found)
    rows: list[dict[str, Any]] = []
    bumps: list[dict[str, Any]] = []
    for key in keys:
        queued = by_queue[key]
        for offset, item in enumerate(queued, start=1):
            rows.append(_new_row(item, last[key] + offset, now))
        deliverable = any(item.kind != ALARM_STEP for item in queued)
        bumps.append(
            {
                "k_municipality": key[0],
                "k_patient": key[1],
                "k_last": last[key] + len(queued),
                "k_due": now if deliverable else None,
            }
        )
    connection.execute(_BUMP_QUEUE, bumps)
    inserted = connection.execute(_ADD_ENTRIES[dialect], rows)
    return {str(entry_id) for (entry_id,) in inserted}


def _new_row(item: NewEntry, sequence: int, now: datetime) -> dict[str, Any]:
    return {
        "entry_id": item.entry_id,
        "municipality": item.municipality,
        "patient": item.patient,
        "sequence": sequence,
        "kind": item.kind,
        "event_id": item.event_id,
        "service_code": item.service_code,
        "vendor_system": item.vendor_system,
        "client_id": item.client_id,
        "event": item.event,
        "traceparent": item.traceparent,
        "occurred_time": item.occurred_time,
        "receive_time": item.receive_time,
        "state": EntryState.QUEUED.value,
        "attempts": 0,
        "next_attempt_time": None,
        "last_error_reason": "",
        "create_time": now,
        "update_time": now,
        "journaled_time": None,
        "note_identifier": "",
        "audit_pending": False,
        "alarm_id": item.alarm_id,
        "alarm_segment": None,
    }


# -- alarm handling logs (domain.alarm) ------------------------------------------------------

#: The alarm windows when the store is given none (the settings' defaults).
DEFAULT_ALARM_WINDOWS = AlarmWindows(settle=timedelta(seconds=30), timeout=timedelta(minutes=30))
_ALARM_KEY = ("municipality", "patient", "vendor_system", "alarm_id")


def _upsert_alarms(dialect: str) -> Any:
    """An alarm's row made, or its segment's due time lowered (never put off) by steps that
    arrived; a due time of NULL (nothing in the segment yet) takes theirs."""
    statement = insert(dialect, alarms)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(_ALARM_KEY),
        set_={
            "closed": sa.or_(alarms.c.closed, excluded.closed),
            "due_time": sa.case(
                (
                    sa.or_(alarms.c.due_time.is_(None), excluded.due_time < alarms.c.due_time),
                    excluded.due_time,
                ),
                else_=alarms.c.due_time,
            ),
        },
    )


_UPSERT_ALARMS = {dialect: _upsert_alarms(dialect) for dialect in _DIALECTS}
#: The alarms due to be cut, due the longest first, that no other transaction holds.
_DUE_ALARMS = (
    sa.select(alarms)
    .where(alarms.c.due_time <= sa.bindparam("k_now", type_=sa.DateTime(timezone=True)))
    .order_by(alarms.c.due_time)
    .limit(sa.bindparam("k_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_NEXT_ALARM_DUE = sa.select(sa.func.min(alarms.c.due_time)).where(alarms.c.due_time.is_not(None))
_THE_ALARM = tuple(alarms.c[name] == sa.bindparam(f"k_{name}") for name in _ALARM_KEY)
_ITS_STEPS = (
    entries.c.municipality == sa.bindparam("k_municipality"),
    entries.c.patient == sa.bindparam("k_patient"),
    entries.c.alarm_id == sa.bindparam("k_alarm_id"),
    ALARM_STEPS,
    entries.c.vendor_system == sa.bindparam("k_vendor_system"),
)
#: An entry's columns that say where it is and, for a handling log, whose steps follow it.
_LOG_COLUMNS = (
    entries.c.entry_id,
    entries.c.municipality,
    entries.c.patient,
    entries.c.kind,
    entries.c.vendor_system,
    entries.c.alarm_id,
    entries.c.alarm_segment,
)
#: An alarm's steps not in a segment yet, in the order they were taken.
_UNCUT_STEPS = (
    sa.select(entries)
    .where(*_ITS_STEPS, entries.c.alarm_segment.is_(None))
    .order_by(entries.c.sequence)
)
_IN_SEGMENT = (
    sa.update(entries)
    .where(entries.c.entry_id.in_(sa.bindparam("k_ids", expanding=True)))
    .values(alarm_segment=sa.bindparam("k_segment", type_=sa.Integer))
)
_NEXT_SEGMENT = (
    sa.update(alarms)
    .where(*_THE_ALARM)
    .values(
        segment=sa.bindparam("v_segment", type_=sa.Integer),
        closed=False,
        due_time=None,
    )
)
#: A handling log's steps follow it (any but a journaled one): journaled with it as its note,
#: dead with it (its reason), waiting again with it when an operator puts it back.
_STEPS_FOLLOW = (
    sa.update(entries)
    .where(
        *_ITS_STEPS,
        entries.c.alarm_segment == sa.bindparam("k_segment", type_=sa.Integer),
        entries.c.state != EntryState.JOURNALED.value,
    )
    .values(
        state=sa.bindparam("v_state"),
        journaled_time=sa.bindparam("v_journaled_time", type_=sa.DateTime(timezone=True)),
        update_time=sa.bindparam("v_time", type_=sa.DateTime(timezone=True)),
        note_identifier=sa.bindparam("v_note"),
        last_error_reason=sa.bindparam("v_reason"),
    )
)


def _steps_arrived(
    connection: sa.Connection,
    dialect: str,
    steps: Sequence[NewEntry],
    now: datetime,
    windows: AlarmWindows,
) -> None:
    """New alarm steps' alarms made or made due sooner: one row per alarm, in key order (so
    concurrent Enqueues lock them in one order), before any queue row is locked (so a cut,
    which locks an alarm and then its queue, never waits on a transaction waiting on it)."""
    closing: dict[AlarmKey, list[bool]] = {}
    for step in steps:
        key = AlarmKey(step.municipality, step.patient, step.vendor_system, step.alarm_id)
        closing.setdefault(key, []).append(step.closes_alarm)
    rows = []
    for key in sorted(closing):
        due, closes = batch_due(windows, now, closing[key])
        rows.append({**dataclasses.asdict(key), "segment": 1, "closed": closes, "due_time": due})
    connection.execute(_UPSERT_ALARMS[dialect], rows)


@dataclasses.dataclass(frozen=True)
class _LogEnded:
    """A handling log's new state (its note when JOURNALED, its reason when DEAD): what its
    steps take on."""

    key: AlarmKey
    segment: int
    state: EntryState
    note: str = ""
    reason: str = ""


def _log_ended(
    row: Any, state: EntryState, *, note: str = "", reason: str = ""
) -> _LogEnded | None:
    """What an entry's steps take on when it is now `state` (None: it is no handling log)."""
    if row.kind != ALARM_LOG or row.alarm_segment is None:
        return None
    key = AlarmKey(row.municipality, row.patient, row.vendor_system, row.alarm_id)
    return _LogEnded(key, int(row.alarm_segment), state, note, reason)


def _steps_follow(
    connection: sa.Connection, logs: Sequence[_LogEnded | None], now: datetime
) -> None:
    """The steps of these handling logs follow them: the one place a log's steps change, for a
    pushed delivery, an EPJ's acknowledgement, a note that makes none and an operator's retry."""
    rows = [
        {
            **_alarm_place(log.key),
            "k_segment": log.segment,
            "v_state": log.state.value,
            "v_journaled_time": now if log.state is EntryState.JOURNALED else None,
            "v_time": now,
            "v_note": log.note,
            "v_reason": log.reason,
        }
        for log in logs
        if log is not None
    ]
    if rows:
        connection.execute(_STEPS_FOLLOW, rows)


def _alarm_place(key: AlarmKey) -> dict[str, str]:
    return {f"k_{name}": value for name, value in dataclasses.asdict(key).items()}


def _cut(connection: sa.Connection, dialect: str, alarm: sa.Row[Any], now: datetime) -> bool:
    """Cuts an alarm's current segment: its steps numbered with it, its handling log queued at
    the tail of the patient's queue, the alarm on to its next segment, not due until a step
    arrives. Whether a log was queued (a segment without steps only moves the alarm on)."""
    key = AlarmKey(alarm.municipality, alarm.patient, alarm.vendor_system, alarm.alarm_id)
    place = _alarm_place(key)
    segment = int(alarm.segment)
    steps = [_entry(row) for row in connection.execute(_UNCUT_STEPS, place)]
    if not steps:
        connection.execute(_NEXT_SEGMENT, {**place, "v_segment": segment})
        return False
    log = NewEntry(
        entry_id=log_entry_id(key.vendor_system, key.alarm_id, segment),
        municipality=key.municipality,
        patient=key.patient,
        kind=ALARM_LOG,
        event_id=key.alarm_id,
        service_code=steps[0].service_code,
        vendor_system=key.vendor_system,
        client_id=steps[-1].client_id,
        event=pack_steps(segment, [step.event for step in steps]),
        traceparent=steps[-1].traceparent,
        occurred_time=min(step.occurred_time for step in steps),
        receive_time=max(step.receive_time for step in steps),
        alarm_id=key.alarm_id,
    )
    _store_new(connection, dialect, [log], now, set())
    ids = [step.entry_id for step in steps] + [log.entry_id]
    connection.execute(_IN_SEGMENT, {"k_ids": ids, "k_segment": segment})
    connection.execute(_NEXT_SEGMENT, {**place, "v_segment": segment + 1})
    return True


class JournalStore:
    def __init__(
        self, db: Database, *, alarm_windows: AlarmWindows = DEFAULT_ALARM_WINDOWS
    ) -> None:
        self.db = db
        self.alarm_windows = alarm_windows
        #: Queues (municipality, patient) known to exist: Enqueue makes no row for them.
        self._queues: set[tuple[str, str]] = set()

    async def migrate(self) -> None:
        await self.db.migrate(MIGRATIONS, VERSION_TABLE)

    # -- Enqueue -------------------------------------------------------------------------------

    async def enqueue(self, items: Sequence[NewEntry], now: datetime) -> list[Enqueued]:
        """Stores the entries that are new, numbering each in its patient's queue; a repeat
        changes nothing (INSERT … ON CONFLICT DO NOTHING: it never fails the others). A few
        statements whatever the number of items; a queue that had nothing to deliver is due
        from `now`."""
        dialect = self.db.dialect
        places = {(item.municipality, item.patient) for item in items}
        unknown = places - self._queues

        def work(connection: sa.Connection) -> list[Enqueued]:
            ids = list(dict.fromkeys(item.entry_id for item in items))
            known = {
                entry_id: EntryState(state)
                for entry_id, state in connection.execute(_STORED_STATES, {"k_ids": ids})
            }
            fresh = list(
                {i.entry_id: i for i in reversed(items) if i.entry_id not in known}.values()
            )
            fresh.reverse()
            if steps := [item for item in fresh if item.kind == ALARM_STEP]:
                _steps_arrived(connection, dialect, steps, now, self.alarm_windows)
            created = _store_new(connection, dialect, fresh, now, unknown) if fresh else set()
            results: list[Enqueued] = []
            for item in items:
                new = item.entry_id in created
                created.discard(item.entry_id)
                results.append(
                    Enqueued(item.entry_id, new, known.get(item.entry_id, EntryState.QUEUED))
                )
            return results

        results = await self.db.write_sync(work)
        # Committed: every item's queue exists now (a stored entry's queue was made with it).
        if len(self._queues) + len(unknown) > KNOWN_QUEUES:
            self._queues.clear()
        self._queues |= places
        return results

    # -- alarm handling logs -------------------------------------------------------------------

    async def cut_alarms(self, now: datetime, limit: int = 32) -> int:
        """Cuts up to `limit` alarms' due segments into handling logs, in one transaction (the
        alarms' row locks are the lease: a crash rolls the whole cut back); the number of
        alarms cut (one whose segment had no step only moves on). The alarms are cut in key
        order, so their queues are locked in the order an Enqueue locks them."""
        dialect = self.db.dialect

        def work(connection: sa.Connection) -> int:
            due = list(connection.execute(_DUE_ALARMS, {"k_now": now, "k_limit": limit}))
            due.sort(key=lambda row: tuple(row._mapping[name] for name in _ALARM_KEY))
            return sum(_cut(connection, dialect, alarm, now) for alarm in due)

        return await self.db.write_sync(work)

    async def next_alarm_due(self) -> datetime | None:
        """The earliest time an alarm's segment is due to be cut (None: none is): a read."""
        async with self.db.read() as session:
            due = (await session.execute(_NEXT_ALARM_DUE)).scalar()
        return None if due is None else aware(due)

    # -- delivery ------------------------------------------------------------------------------

    async def dues(self, *, paused: Sequence[str] = ()) -> dict[str, datetime]:
        """Each municipality's earliest queue due time (a queue due now, or when the next one
        falls due), outside the paused municipalities: one index probe per municipality, and a
        read, so idle workers cost no write."""
        async with self.db.read() as session:
            rows = await session.execute(_DUES)
            return {str(m): aware(due) for m, due in rows if due is not None and m not in paused}

    async def claim_head(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        paused: Sequence[str] = (),
        order: Sequence[str] | None = None,
    ) -> Claim | None:
        """Leases a due patient queue: in the first municipality of `order` (default: every one
        but the paused) that has one, the queue due the longest; with its head (see
        `claim_many`)."""
        claims = await self.claim_many(owner, now, lease, paused=paused, order=order, limit=1)
        return claims[0] if claims else None

    async def claim_many(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        paused: Sequence[str] = (),
        order: Sequence[str] | None = None,
        rank: Mapping[str, float] | None = None,
        limit: int = 1,
        notes: int = 1,
    ) -> list[Claim]:
        """Leases up to `limit` due patient queues in one transaction. The municipalities of
        `order` take turns, the first first; without an order, those with a queue due now
        outside the paused, lowest `rank` first (a municipality not ranked first of all, ties by
        number). Within a municipality, the queues due the longest. Each with its head and up to
        `notes` - 1 due notes behind it, read in the same transaction. A leased queue's due time
        is its lease's expiry, so a worker that dies leaves it due again then."""

        def work(connection: sa.Connection) -> list[Claim]:
            if order is not None:
                places = list(order)
            else:
                ranks = rank or {}
                places = sorted(
                    (
                        str(m)
                        for m, due in connection.execute(_DUES)
                        if due is not None and aware(due) <= now
                    ),
                    key=lambda m: (ranks.get(m, 0.0), m),
                )
            due: list[list[tuple[str, str]]] = []
            for municipality in places:
                if municipality in paused:
                    continue
                found = connection.execute(
                    _DUE_QUEUES, {"k_municipality": municipality, "k_now": now, "k_limit": limit}
                )
                if queued := [(municipality, str(patient)) for (patient,) in found]:
                    due.append(queued)
            picked = _taking_turns(due, limit)
            if not picked:
                return []
            until = now + lease
            connection.execute(
                _LEASE,
                [
                    {"k_municipality": m, "k_patient": p, "k_owner": owner, "k_until": until}
                    for m, p in picked
                ],
            )
            claims: list[Claim] = []
            for municipality, patient in picked:
                place = {"k_municipality": municipality, "k_patient": patient}
                waiting = _next_notes(connection, place, max(2, notes))
                ready = _due_notes(waiting, now)[:notes]
                head, behind = (ready[0], tuple(ready[1:])) if ready else (None, ())
                claims.append(Claim(municipality, patient, head, len(waiting) > 1, behind))
            return claims

        return await self.db.write_sync(work)

    async def head(self, municipality: str, patient: str, now: datetime) -> Entry | None:
        """The entry to deliver next for a patient, if it is due."""
        async with self.db.read() as session:
            row = (
                await session.execute(_HEAD, {"k_municipality": municipality, "k_patient": patient})
            ).one_or_none()
        if row is None:
            return None
        entry = _entry(row)
        return entry if _due(entry, now) else None

    async def release(self, municipality: str, patient: str, owner: str) -> None:
        """Gives the queue up; it is due again when its head is (NULL: nothing left)."""

        def work(connection: sa.Connection) -> None:
            _release(connection, municipality, patient, owner)

        await self.db.write_sync(work)

    async def settle(
        self,
        entry: Entry,
        owner: str,
        now: datetime,
        change: Change,
        *,
        release: bool = True,
        go_on: int = 0,
    ) -> Settled:
        """After an attempt: the entry changed (journaled, retrying or dead) while `owner` still
        holds its queue's lease, in one transaction with what comes next: with `go_on`, up to
        that many of the queue's next notes when they are due (the lease kept, to deliver them);
        else, or when none is due, with `release`, the queue given up (due again when its head
        is)."""
        values = _change_values(entry, now, change)

        def work(connection: sa.Connection) -> Settled:
            done = connection.execute(
                _SETTLE[change.state],
                {
                    **values,
                    "k_entry_id": entry.entry_id,
                    "k_municipality": entry.municipality,
                    "k_patient": entry.patient,
                    "k_owner": owner,
                },
            )
            if rowcount(done) == 0:
                return Settled(kept=False)  # the lease ran out: another worker has the queue
            if change.state is not EntryState.RETRYING:
                ended = _log_ended(entry, change.state, note=change.note, reason=change.reason)
                _steps_follow(connection, [ended], now)
            place = {"k_municipality": entry.municipality, "k_patient": entry.patient}
            if go_on > 0:
                due = _due_notes(_next_notes(connection, place, go_on), now)
                if due:
                    return Settled(kept=True, notes=tuple(due))
            if release:
                _release(connection, entry.municipality, entry.patient, owner)
            return Settled(kept=True)

        return await self.db.write_sync(work)

    async def journaled(self, entry: Entry, owner: str, now: datetime, note: str) -> bool:
        """The entry delivered, the queue still held (`settle` does both in one)."""
        change = Change(EntryState.JOURNALED, note=note)
        return (await self.settle(entry, owner, now, change, release=False)).kept

    async def retrying(
        self, entry: Entry, owner: str, now: datetime, at: datetime, reason: str
    ) -> bool:
        """The entry to be tried again at `at`, the queue still held."""
        change = Change(EntryState.RETRYING, reason=reason, at=at)
        return (await self.settle(entry, owner, now, change, release=False)).kept

    async def dead(self, entry: Entry, owner: str, now: datetime, reason: str) -> bool:
        """The entry given up on, the queue still held."""
        change = Change(EntryState.DEAD, reason=reason)
        return (await self.settle(entry, owner, now, change, release=False)).kept

    # -- audit outbox --------------------------------------------------------------------------

    async def audit_pending(self, limit: int = 200) -> list[Entry]:
        async with self.db.read() as session:
            rows = await session.execute(
                sa.select(entries).where(entries.c.audit_pending.is_(True)).limit(limit)
            )
            return [_entry(r) for r in rows]

    async def audited(self, entry_ids: Sequence[str]) -> None:
        def work(connection: sa.Connection) -> None:
            connection.execute(
                sa.update(entries)
                .where(entries.c.entry_id.in_(list(entry_ids)))
                .values(audit_pending=False)
            )

        await self.db.write_sync(work)

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

        def work(connection: sa.Connection) -> EntryState | None:
            place = connection.execute(
                sa.select(*_LOG_COLUMNS).where(entries.c.entry_id == entry_id)
            ).one_or_none()
            if place is None:
                return None
            # The queue's row lock first: a release meanwhile either sees this entry back or has
            # left the queue unleased before this looks.
            queue = (queues.c.municipality == place.municipality, queues.c.patient == place.patient)
            connection.execute(sa.select(queues.c.patient).where(*queue).with_for_update())
            found = connection.execute(
                sa.select(entries.c.state).where(entries.c.entry_id == entry_id)
            ).one()
            state = EntryState(found.state)
            if state in states:
                connection.execute(
                    sa.update(entries)
                    .where(entries.c.entry_id == entry_id, entries.c.state == found.state)
                    .values(
                        state=EntryState.QUEUED.value,
                        attempts=0,
                        next_attempt_time=None,
                        last_error_reason="",
                        update_time=now,
                        # Pull mode: numbered again, at the tail (the cursor never goes back).
                        pull_sequence=None,
                        read_until=None,
                    )
                )
                _steps_follow(connection, [_log_ended(place, EntryState.QUEUED)], now)
                # Due now unless leased (its release finds the new head) or due sooner.
                connection.execute(
                    sa.update(queues)
                    .where(
                        *queue,
                        queues.c.lease_owner == "",
                        sa.or_(queues.c.due_time.is_(None), queues.c.due_time > now),
                    )
                    .values(due_time=now)
                )
            return state

        return await self.db.write_sync(work)

    # -- pull mode (vkp_journaling.domain.pull) ------------------------------------------------

    async def pending(
        self,
        municipality: str,
        *,
        page_token: str,
        page_size: int,
        now: datetime,
        read_until: datetime,
    ) -> pull.PulledPage:
        """ListPending's one transaction, under the municipality row's lock (FOR UPDATE on
        PostgreSQL; the single writer on SQLite): the notes not numbered yet, and the READ ones
        whose time ran out, numbered on from the counter; then the page after the cursor (empty
        token: from the oldest note not answered) marked READ until `read_until`. Every
        numbering and every read happen under that lock, so a note committed after a page was
        read gets a number above it."""

        def work(connection: sa.Connection) -> pull.PulledPage:
            place = {"k_municipality": municipality}
            row = connection.execute(_PULL_COUNTER, place).one_or_none()
            last = 0 if row is None else int(row.last_pull_sequence)
            position = paging.position(
                page_token, municipality, lambda parts: pull.check_cursor(int(parts[0]), last)
            )
            expired = [
                pull.Unnumbered(
                    str(r.entry_id), str(r.patient), int(r.sequence), aware(r.create_time)
                )
                for r in connection.execute(_PULL_EXPIRED, {**place, "k_now": now})
            ]
            fresh = [
                pull.Unnumbered(
                    str(r.entry_id), str(r.patient), int(r.sequence), aware(r.create_time)
                )
                for r in connection.execute(_PULL_TO_NUMBER, place)
            ]
            numbered = dict(pull.number_on(last, [*expired, *fresh]))
            if numbered:
                again = {note.entry_id for note in expired}
                if offered_again := [
                    {"k_entry_id": entry_id, "v_pull_sequence": number, "v_update_time": now}
                    for entry_id, number in numbered.items()
                    if entry_id in again
                ]:
                    connection.execute(_PULL_OFFER_AGAIN, offered_again)
                if first_time := [
                    {"k_entry_id": entry_id, "v_pull_sequence": number}
                    for entry_id, number in numbered.items()
                    if entry_id not in again
                ]:
                    connection.execute(_PULL_NUMBER, first_time)
                last += len(numbered)
                connection.execute(_PULL_BUMP, {**place, "k_last": last})
            if position is None:
                oldest = connection.execute(_PULL_OLDEST, place).scalar()
                position = last if oldest is None else int(oldest) - 1
            rows = list(
                connection.execute(_PULL_PAGE, {**place, "k_after": position, "k_limit": page_size})
            )
            if not rows:
                return pull.PulledPage([], position)
            marked = {
                str(entry_id)
                for (entry_id,) in connection.execute(
                    _PULL_MARK_READ,
                    {
                        "k_ids": [r.entry_id for r in rows],
                        "v_read_until": read_until,
                        "v_update_time": now,
                    },
                )
            }
            page = [
                dataclasses.replace(_entry(r), state=EntryState.READ)
                for r in rows
                if r.entry_id in marked
            ]
            return pull.PulledPage(page, int(rows[-1].pull_sequence))

        return await self.db.write_sync(work)

    async def unrenderable(self, entry_ids: Sequence[str], now: datetime, reason: str) -> list[str]:
        """Read notes that make no note: dead letters (`reason`), never offered again. The ids
        made dead (not one answered meanwhile)."""

        def work(connection: sa.Connection) -> list[str]:
            dead = connection.execute(
                sa.update(entries)
                .where(
                    entries.c.entry_id.in_(list(entry_ids)),
                    entries.c.state == EntryState.READ.value,
                )
                .values(
                    state=EntryState.DEAD.value,
                    last_error_reason=reason,
                    read_until=None,
                    update_time=now,
                )
                .returning(*_LOG_COLUMNS)
            )
            rows = list(dead)
            _steps_follow(
                connection, [_log_ended(r, EntryState.DEAD, reason=reason) for r in rows], now
            )
            return [str(row.entry_id) for row in rows]

        return await self.db.write_sync(work)

    async def acknowledge(
        self,
        municipality: str,
        acknowledgements: Sequence[pull.Acknowledgement],
        now: datetime,
        note_identifier: Callable[[str], str],
    ) -> list[pull.Apply | pull.Keep | VkpError]:
        """Acknowledge's one transaction: the entries locked (in key order), each answer decided
        on the entry as it is then (`domain.pull.acknowledge`, a repeat in the same request
        seeing the first's change) and the changes written: JOURNALED with its note identifier
        and the audit record owed, as a pushed delivery; DEAD with the EPJ's reason. Per
        acknowledgement, in order: what it did (Apply: it changed the entry; Keep: a repeat),
        or the error."""

        def work(connection: sa.Connection) -> list[pull.Apply | pull.Keep | VkpError]:
            ids = sorted({a.entry_id for a in acknowledgements})
            rows = {str(r.entry_id): r for r in connection.execute(_PULL_ACK_LOCK, {"k_ids": ids})}
            found = {
                str(r.entry_id): pull.Offered(
                    str(r.municipality),
                    EntryState(r.state),
                    None if r.pull_sequence is None else int(r.pull_sequence),
                )
                for r in rows.values()
            }
            results: list[pull.Apply | pull.Keep | VkpError] = []
            changes: dict[str, tuple[pull.Acknowledgement, EntryState]] = {}
            for ack in acknowledgements:
                decision = pull.acknowledge(found.get(ack.entry_id), municipality, ack.outcome)
                if isinstance(decision, pull.Apply):
                    changes[ack.entry_id] = (ack, decision.state)
                    found[ack.entry_id] = dataclasses.replace(
                        found[ack.entry_id], state=decision.state
                    )
                results.append(decision)
            journaled: list[dict[str, Any]] = []
            dead: list[dict[str, Any]] = []
            ended: list[_LogEnded | None] = []
            for entry_id, (ack, state) in changes.items():
                if state is EntryState.JOURNALED:
                    note = note_identifier(entry_id)
                    journaled.append({"k_entry_id": entry_id, "v_note_identifier": note})
                    ended.append(_log_ended(rows[entry_id], state, note=note))
                elif state is EntryState.DEAD:
                    reason = pull.refused(ack.reason)
                    dead.append({"k_entry_id": entry_id, "v_last_error_reason": reason})
                    ended.append(_log_ended(rows[entry_id], state, reason=reason))
            if journaled:
                connection.execute(_PULL_JOURNALED, [{**j, "v_time": now} for j in journaled])
            if dead:
                connection.execute(_PULL_REFUSED, [{**d, "v_time": now} for d in dead])
            _steps_follow(connection, ended, now)
            return results

        return await self.db.write_sync(work)

    async def left_pull(self, municipality: str, now: datetime) -> None:
        """A municipality whose EPJ no longer pulls: its READ notes wait again (QUEUED) and its
        idle queues are due, so the workers deliver them."""

        def work(connection: sa.Connection) -> None:
            connection.execute(
                sa.update(entries)
                .where(
                    entries.c.municipality == municipality,
                    entries.c.state == EntryState.READ.value,
                )
                .values(state=EntryState.QUEUED.value, read_until=None, update_time=now)
            )
            connection.execute(
                sa.update(queues)
                .where(
                    queues.c.municipality == municipality,
                    queues.c.lease_owner == "",
                    queues.c.due_time.is_(None),
                )
                .values(due_time=now)
            )

        await self.db.write_sync(work)


# -- pull mode's statements, made once ---------------------------------------------------------

_PULL_PLACE = entries.c.municipality == sa.bindparam("k_municipality")
#: The municipality's counter, its row locked: every numbering and read of pull notes is under it.
_PULL_COUNTER = (
    sa.select(municipalities.c.last_pull_sequence)
    .where(municipalities.c.municipality == sa.bindparam("k_municipality"))
    .with_for_update()
)
_PULL_BUMP = (
    sa.update(municipalities)
    .where(municipalities.c.municipality == sa.bindparam("k_municipality"))
    .values(last_pull_sequence=sa.bindparam("k_last"))
)
_PULL_COLUMNS = (entries.c.entry_id, entries.c.patient, entries.c.sequence, entries.c.create_time)
#: READ notes whose time ran out (the index of READ notes by read_until).
_PULL_EXPIRED = sa.select(*_PULL_COLUMNS).where(
    _PULL_PLACE,
    entries.c.state == sa.literal_column(repr(EntryState.READ.value)),
    entries.c.read_until <= sa.bindparam("k_now", type_=sa.DateTime(timezone=True)),
)
#: Notes not numbered yet (the partial index of notes to number).
_PULL_TO_NUMBER = (
    sa.select(*_PULL_COLUMNS).where(_PULL_PLACE, tables.TO_NUMBER).order_by(entries.c.create_time)
)
_PULL_NUMBER = (
    sa.update(entries)
    .where(
        entries.c.entry_id == sa.bindparam("k_entry_id"),
        entries.c.pull_sequence.is_(None),
    )
    .values(
        pull_sequence=sa.bindparam("v_pull_sequence", type_=sa.BigInteger),
    )
)
_PULL_OFFER_AGAIN = (
    sa.update(entries)
    .where(
        entries.c.entry_id == sa.bindparam("k_entry_id"),
        entries.c.state == EntryState.READ.value,
    )
    .values(
        pull_sequence=sa.bindparam("v_pull_sequence", type_=sa.BigInteger),
        state=EntryState.QUEUED.value,
        read_until=None,
        update_time=sa.bindparam("v_update_time", type_=sa.DateTime(timezone=True)),
    )
)
#: Where a first page starts: the oldest numbered note not answered (the offered notes' index).
_PULL_OLDEST = sa.select(sa.func.min(entries.c.pull_sequence)).where(_PULL_PLACE, tables.OFFERED)
_PULL_PAGE = (
    sa.select(entries)
    .where(
        _PULL_PLACE,
        tables.OFFERED,
        entries.c.pull_sequence > sa.bindparam("k_after", type_=sa.BigInteger),
    )
    .order_by(entries.c.pull_sequence)
    .limit(sa.bindparam("k_limit", type_=sa.Integer))
)
_PULL_MARK_READ = (
    sa.update(entries)
    .where(
        entries.c.entry_id.in_(sa.bindparam("k_ids", expanding=True)),
        tables.OFFERED,
    )
    .values(
        state=EntryState.READ.value,
        read_until=sa.bindparam("v_read_until", type_=sa.DateTime(timezone=True)),
        update_time=sa.bindparam("v_update_time", type_=sa.DateTime(timezone=True)),
    )
    .returning(entries.c.entry_id)
)
_PULL_ACK_LOCK = (
    sa.select(*_LOG_COLUMNS, entries.c.state, entries.c.pull_sequence)
    .where(entries.c.entry_id.in_(sa.bindparam("k_ids", expanding=True)))
    .order_by(entries.c.entry_id)
    .with_for_update()
)
_PULL_JOURNALED = (
    sa.update(entries)
    .where(entries.c.entry_id == sa.bindparam("k_entry_id"))
    .values(
        state=EntryState.JOURNALED.value,
        journaled_time=sa.bindparam("v_time", type_=sa.DateTime(timezone=True)),
        update_time=sa.bindparam("v_time", type_=sa.DateTime(timezone=True)),
        note_identifier=sa.bindparam("v_note_identifier"),
        audit_pending=True,
        read_until=None,
        next_attempt_time=None,
    )
)
_PULL_REFUSED = (
    sa.update(entries)
    .where(entries.c.entry_id == sa.bindparam("k_entry_id"))
    .values(
        state=EntryState.DEAD.value,
        last_error_reason=sa.bindparam("v_last_error_reason"),
        update_time=sa.bindparam("v_time", type_=sa.DateTime(timezone=True)),
        read_until=None,
        next_attempt_time=None,
    )
)
