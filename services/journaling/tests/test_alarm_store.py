"""Alarm steps in the journal store, on SQLite and PostgreSQL: their alarm's due time, the cut of
a segment into a handling log at the tail of the patient's queue, the next segment, and the
steps following their log: journaled or dead with it, pushed or pulled, and back with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from vkp_journaling.domain.alarm import (
    ALARM_LOG,
    AlarmWindows,
    log_entry_id,
    unpack_steps,
)
from vkp_journaling.domain.entry import Change, Entry, EntryState, NewEntry
from vkp_journaling.domain.pull import EPJ_REFUSED, Acknowledgement, Apply, Outcome
from vkp_journaling.store import JournalStore
from vkp_lib.db import Database
from vkp_lib.testing.data import TEST_PEOPLE

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PLACE = "964120005"
SYSTEM = "vendors/912340007/systems/alarm-centre"
WINDOWS = AlarmWindows(settle=timedelta(seconds=30), timeout=timedelta(minutes=30))
LEASE = timedelta(seconds=30)


def step(
    alarm_id: str = "alarm-1",
    *,
    closes: bool = False,
    patient: int = 0,
    entry_id: str = "",
    event: bytes = b"",
) -> NewEntry:
    return NewEntry(
        entry_id=entry_id or str(uuid.uuid4()),
        municipality=PLACE,
        patient=TEST_PEOPLE[patient].national_id,
        kind="alarm_step",
        event_id=f"evt-{uuid.uuid4().hex[:8]}",
        service_code="TA",
        vendor_system=SYSTEM,
        client_id="alarm-centre",
        event=event or uuid.uuid4().bytes,
        traceparent="",
        occurred_time=NOW,
        receive_time=NOW,
        alarm_id=alarm_id,
        closes_alarm=closes,
    )


def note(patient: int = 0) -> NewEntry:
    item = step(patient=patient)
    return NewEntry(
        **{
            **{name: getattr(item, name) for name in NewEntry.__dataclass_fields__},
            "kind": "home_measurement",
            "service_code": "DHO",
            "alarm_id": "",
        }
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JournalStore]:
    db = Database.from_url(database_url, name="journaling")
    await db.start()
    journal = JournalStore(db, alarm_windows=WINDOWS)
    await journal.migrate()
    yield journal
    await db.close()


async def stored(store: JournalStore, entry_id: str) -> Entry:
    found = await store.get(entry_id)
    assert found is not None
    return found


async def test_an_open_alarms_first_step_makes_it_due_after_the_timeout(
    store: JournalStore,
) -> None:
    await store.enqueue([step()], NOW)
    assert await store.next_alarm_due() == NOW + WINDOWS.timeout
    await store.enqueue([step()], NOW + timedelta(minutes=5))  # a later step puts nothing off
    assert await store.next_alarm_due() == NOW + WINDOWS.timeout
    assert await store.cut_alarms(NOW + WINDOWS.timeout - timedelta(seconds=1)) == 0


async def test_a_closing_step_makes_the_alarm_due_after_the_settle_window(
    store: JournalStore,
) -> None:
    await store.enqueue([step()], NOW)
    closed = NOW + timedelta(minutes=4)
    await store.enqueue([step(closes=True)], closed)
    assert await store.next_alarm_due() == closed + WINDOWS.settle


async def test_a_repeated_step_changes_no_due_time(store: JournalStore) -> None:
    first = step()
    await store.enqueue([first], NOW)
    again = NewEntry(**{**vars(first), "closes_alarm": True})
    await store.enqueue([again], NOW + timedelta(minutes=1))
    assert await store.next_alarm_due() == NOW + WINDOWS.timeout


async def test_a_cut_queues_one_log_of_every_step_at_the_tail_and_moves_the_alarm_on(
    store: JournalStore,
) -> None:
    steps = [step(event=b"a"), step(event=b"b"), step(closes=True, event=b"c")]
    await store.enqueue(steps[:1], NOW)
    await store.enqueue([note()], NOW)
    await store.enqueue(steps[1:], NOW + timedelta(seconds=10))
    due = NOW + timedelta(seconds=10) + WINDOWS.settle
    assert await store.cut_alarms(due) == 1
    assert await store.next_alarm_due() is None
    log = await stored(store, log_entry_id(SYSTEM, "alarm-1", 1))
    assert (log.kind, log.state, log.sequence, log.alarm_segment) == (
        ALARM_LOG,
        EntryState.QUEUED,
        5,
        1,
    )
    assert unpack_steps(log.event) == (1, [b"a", b"b", b"c"])
    for item in steps:
        assert (await stored(store, item.entry_id)).alarm_segment == 1
    # A cut again finds nothing due; the log is the queue's head after the note.
    assert await store.cut_alarms(due + timedelta(hours=1)) == 0
    claim = await store.claim_head("worker", due, LEASE)
    assert claim is not None
    assert claim.head is not None
    assert claim.head.kind == "home_measurement"


async def test_steps_after_a_cut_make_the_next_segment(store: JournalStore) -> None:
    await store.enqueue([step(event=b"a")], NOW)
    assert await store.cut_alarms(NOW + WINDOWS.timeout) == 1
    later = NOW + WINDOWS.timeout + timedelta(minutes=1)
    await store.enqueue([step(event=b"b"), step(closes=True, event=b"c")], later)
    assert await store.next_alarm_due() == later + WINDOWS.settle
    assert await store.cut_alarms(later + WINDOWS.settle) == 1
    second = await stored(store, log_entry_id(SYSTEM, "alarm-1", 2))
    assert unpack_steps(second.event) == (2, [b"b", b"c"])


async def test_a_journaled_log_journals_its_steps(store: JournalStore) -> None:
    steps = [step(), step(closes=True)]
    await store.enqueue(steps, NOW)
    await store.cut_alarms(NOW + WINDOWS.settle)
    claim = await store.claim_head("worker", NOW + WINDOWS.settle, LEASE)
    assert claim is not None
    assert claim.head is not None
    assert claim.head.kind == ALARM_LOG
    note_id = f"{claim.head.entry_id}/1"
    change = Change(EntryState.JOURNALED, note=note_id)
    settled = await store.settle(claim.head, "worker", NOW + WINDOWS.settle, change)
    assert settled.kept
    for item in steps:
        found = await stored(store, item.entry_id)
        assert (found.state, found.note_identifier) == (EntryState.JOURNALED, note_id)


async def test_alarms_of_other_patients_and_ids_are_cut_apart(store: JournalStore) -> None:
    await store.enqueue(
        [step("alarm-1", closes=True), step("alarm-2", closes=True), step("alarm-1", patient=1)],
        NOW,
    )
    assert await store.cut_alarms(NOW + WINDOWS.settle) == 2
    assert await store.next_alarm_due() == NOW + WINDOWS.timeout  # the other patient's alarm-1
    assert await store.cut_alarms(NOW + WINDOWS.timeout) == 1


async def cut_log(store: JournalStore) -> tuple[list[NewEntry], Entry]:
    """A closed alarm's two steps, cut into their handling log."""
    steps = [step(), step(closes=True)]
    await store.enqueue(steps, NOW)
    assert await store.cut_alarms(NOW + WINDOWS.settle) == 1
    return steps, await stored(store, log_entry_id(SYSTEM, "alarm-1", 1))


async def states(store: JournalStore, items: list[NewEntry]) -> set[tuple[EntryState, str, str]]:
    found = [await stored(store, item.entry_id) for item in items]
    return {(e.state, e.note_identifier, e.last_error_reason) for e in found}


async def test_a_dead_log_takes_its_steps_with_it_and_a_retry_brings_them_back(
    store: JournalStore,
) -> None:
    steps, log = await cut_log(store)
    now = NOW + WINDOWS.settle
    claim = await store.claim_head("worker", now, LEASE)
    assert claim is not None
    assert claim.head == log
    await store.settle(log, "worker", now, Change(EntryState.DEAD, reason="EPJ_REJECTED_400"))
    assert await states(store, steps) == {(EntryState.DEAD, "", "EPJ_REJECTED_400")}
    assert await store.requeue(log.entry_id, now, states=(EntryState.DEAD,)) is EntryState.DEAD
    assert await states(store, steps) == {(EntryState.QUEUED, "", "")}
    claim = await store.claim_head("worker", now, LEASE)
    assert claim is not None
    assert claim.head is not None
    note_id = f"{log.entry_id}/1"
    await store.settle(claim.head, "worker", now, Change(EntryState.JOURNALED, note=note_id))
    assert await states(store, steps) == {(EntryState.JOURNALED, note_id, "")}


async def test_an_epj_that_pulls_journals_a_log_and_its_steps_with_it(
    store: JournalStore,
) -> None:
    steps, log = await cut_log(store)
    now = NOW + WINDOWS.settle
    page = await store.pending(PLACE, page_token="", page_size=10, now=now, read_until=now + LEASE)
    assert [e.entry_id for e in page.entries] == [log.entry_id]  # the steps are no notes
    answers = await store.acknowledge(
        PLACE, [Acknowledgement(log.entry_id, Outcome.JOURNALED)], now, lambda i: f"{i}/1"
    )
    assert answers == [Apply(EntryState.JOURNALED)]
    assert await states(store, steps) == {(EntryState.JOURNALED, f"{log.entry_id}/1", "")}
    for item in steps:
        assert (await stored(store, item.entry_id)).journaled_time == now


async def test_a_log_the_epj_refuses_or_that_makes_no_note_is_dead_with_its_steps(
    store: JournalStore,
) -> None:
    steps, log = await cut_log(store)
    now = NOW + WINDOWS.settle
    await store.pending(PLACE, page_token="", page_size=10, now=now, read_until=now + LEASE)
    await store.acknowledge(
        PLACE, [Acknowledgement(log.entry_id, Outcome.REJECTED, "no such patient")], now, str
    )
    refused = f"{EPJ_REFUSED}: no such patient"
    assert await states(store, steps) == {(EntryState.DEAD, "", refused)}
    # Put back, read again, and unrenderable this time: dead again, and its steps.
    await store.requeue(log.entry_id, now, states=(EntryState.DEAD,))
    assert await states(store, steps) == {(EntryState.QUEUED, "", "")}
    page = await store.pending(PLACE, page_token="", page_size=10, now=now, read_until=now + LEASE)
    assert [e.entry_id for e in page.entries] == [log.entry_id]
    await store.unrenderable([log.entry_id], now, "RENDER_FAILED")
    assert await states(store, steps) == {(EntryState.DEAD, "", "RENDER_FAILED")}
