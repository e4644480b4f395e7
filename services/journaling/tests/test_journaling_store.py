"""The journal store on SQLite and PostgreSQL: idempotent enqueue, per-patient sequences, leases,
the queue head (alarm steps never block, dead notes leave), and requeueing a dead letter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from vkp_journaling.domain.entry import RETRYABLE, Entry, EntryState, NewEntry
from vkp_journaling.store import JournalStore
from vkp_lib.db import Database
from vkp_lib.testing.data import TEST_PEOPLE

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
PLACE = "964120005"


def entry(patient: int = 0, kind: str = "medication_dispense", entry_id: str = "") -> NewEntry:
    return NewEntry(
        entry_id=entry_id or str(uuid.uuid4()),
        municipality=PLACE,
        patient=TEST_PEOPLE[patient].national_id,
        kind=kind,
        event_id=f"evt-{uuid.uuid4().hex[:8]}",
        service_code="MD",
        vendor_system="vendors/912340007/systems/dispenser-cloud",
        client_id="dosetta-dispenser",
        event=b"",
        traceparent="",
        occurred_time=NOW,
        receive_time=NOW,
    )


async def stored(store: JournalStore, entry_id: str) -> Entry:
    found = await store.get(entry_id)
    assert found is not None
    return found


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JournalStore]:
    db = Database.from_url(database_url, name="journaling")
    await db.start()
    journal = JournalStore(db)
    await journal.migrate()
    yield journal
    await db.close()


async def test_an_entry_enqueued_twice_is_stored_once(store: JournalStore) -> None:
    first = entry()
    again = await store.enqueue([first, first], NOW)
    repeat = await store.enqueue([first], NOW)
    assert [r.created for r in again + repeat] == [True, False, False]
    assert (await stored(store, first.entry_id)).sequence == 1


async def test_each_patient_has_a_sequence_of_its_own(store: JournalStore) -> None:
    batch = [entry(0), entry(1), entry(0), entry(0), entry(1)]
    await store.enqueue(batch, NOW)
    sequences = [(await stored(store, e.entry_id)).sequence for e in batch]
    assert sequences == [1, 1, 2, 3, 2]


async def test_a_leased_queue_is_not_claimed_again_until_its_lease_ends(
    store: JournalStore,
) -> None:
    await store.enqueue([entry(0)], NOW)
    assert await store.claim("a", NOW, LEASE) == (PLACE, TEST_PEOPLE[0].national_id)
    assert await store.claim("b", NOW, LEASE) is None
    assert await store.claim("b", NOW + LEASE + timedelta(seconds=1), LEASE) is not None


async def test_the_head_is_the_lowest_waiting_sequence_and_alarm_steps_never_block(
    store: JournalStore,
) -> None:
    held, first, second = entry(kind="alarm_step"), entry(), entry()
    await store.enqueue([held, first, second], NOW)
    head = await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW)
    assert head is not None
    assert head.entry_id == first.entry_id
    assert await store.claim("w", NOW, LEASE) is not None
    assert await store.journaled(head, "w", NOW, "n")
    after = await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW)
    assert after is not None
    assert after.entry_id == second.entry_id


async def test_a_retrying_head_holds_its_queue_until_due_and_a_dead_one_leaves_it(
    store: JournalStore,
) -> None:
    first, second = entry(), entry()
    await store.enqueue([first, second], NOW)
    assert await store.claim("w", NOW, LEASE) is not None
    head = await stored(store, first.entry_id)
    later = NOW + timedelta(minutes=1)
    assert await store.retrying(head, "w", NOW, later, "EPJ_TIMEOUT")
    await store.release(PLACE, TEST_PEOPLE[0].national_id, "w")
    assert await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW) is None
    assert await store.claim("w", NOW, LEASE) is None  # the head is not due
    assert await store.claim("w", later, LEASE) is not None
    assert await store.dead(await stored(store, first.entry_id), "w", later, "EPJ_REJECTED_400")
    nxt = await store.head(PLACE, TEST_PEOPLE[0].national_id, later)
    assert nxt is not None
    assert nxt.entry_id == second.entry_id


async def test_a_worker_whose_lease_was_taken_over_cannot_change_the_entry(
    store: JournalStore,
) -> None:
    only = entry()
    await store.enqueue([only], NOW)
    assert await store.claim("slow", NOW, LEASE) is not None
    late = NOW + LEASE + timedelta(seconds=1)
    assert await store.claim("fresh", late, LEASE) is not None
    assert not await store.journaled(await stored(store, only.entry_id), "slow", late, "n")
    assert (await stored(store, only.entry_id)).state is EntryState.QUEUED


async def test_requeue_puts_a_dead_letter_back_and_leaves_a_living_entry_as_it_is(
    store: JournalStore,
) -> None:
    only = entry()
    await store.enqueue([only], NOW)
    soon = NOW + timedelta(seconds=30)
    assert await store.requeue(only.entry_id, soon, states=RETRYABLE) is EntryState.QUEUED
    assert (await stored(store, only.entry_id)).update_time == NOW  # not touched
    assert await store.claim("w", NOW, LEASE) is not None
    assert await store.dead(await stored(store, only.entry_id), "w", NOW, "EPJ_REJECTED_400")
    dead = await store.page(PLACE, state=EntryState.DEAD)
    assert [e.entry_id for e in dead.entries] == [only.entry_id]
    later = NOW + timedelta(minutes=1)
    assert await store.requeue(only.entry_id, later, states=RETRYABLE) is EntryState.DEAD
    back = await stored(store, only.entry_id)
    assert (back.state, back.attempts, back.update_time) == (EntryState.QUEUED, 0, later)


async def test_requeue_of_an_unknown_entry_finds_nothing(store: JournalStore) -> None:
    assert await store.requeue("no-such-entry", NOW, states=RETRYABLE) is None
    assert await store.get("no-such-entry") is None


async def test_an_idle_queue_is_seen_by_a_read_before_any_claim(store: JournalStore) -> None:
    assert not await store.any_due(NOW)
    first = entry()
    await store.enqueue([first], NOW)
    assert await store.any_due(NOW)
    assert not await store.any_due(NOW, paused=[PLACE])
    assert await store.claim("w", NOW, LEASE) is not None
    assert not await store.any_due(NOW)  # leased
