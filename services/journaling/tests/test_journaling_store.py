"""The journal store on SQLite and PostgreSQL: idempotent enqueue, per-patient sequences, leases,
the queue head (alarm steps never block, dead notes leave), and requeueing a dead letter."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from vkp_journaling.domain.entry import RETRYABLE, Entry, EntryState, NewEntry
from vkp_journaling.store import JournalStore
from vkp_journaling.tables import EPOCH, MIGRATIONS, VERSION_TABLE, entries, queues
from vkp_lib.db import Database, aware
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


async def claim(
    store: JournalStore,
    owner: str,
    now: datetime,
    lease: timedelta,
    *,
    order: Sequence[str] | None = None,
) -> tuple[str, str] | None:
    """A due queue leased (`claim_head`): its municipality and patient."""
    head = await store.claim_head(owner, now, lease, order=order)
    return None if head is None else (head.municipality, head.patient)


async def any_due(store: JournalStore, now: datetime, *, paused: Sequence[str] = ()) -> bool:
    """Whether some queue is due and unleased outside the paused municipalities."""
    return any(due <= now for due in (await store.dues(paused=paused)).values())


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


async def test_later_enqueues_number_on_in_known_and_new_queues_and_other_replicas_too(
    store: JournalStore,
) -> None:
    await store.enqueue([entry(0), entry(1)], NOW)
    other_replica = JournalStore(store.db)  # knows no queue yet
    later = [entry(0), entry(2), entry(1)]
    await store.enqueue(later[:2], NOW)
    await other_replica.enqueue(later[2:], NOW)
    assert [(await stored(store, e.entry_id)).sequence for e in later] == [2, 1, 2]
    other = dataclasses.replace(entry(0), municipality="971130008")
    await store.enqueue([other], NOW)  # the same patient in another municipality: a new queue
    assert (await stored(store, other.entry_id)).sequence == 1
    assert set(await store.dues()) == {PLACE, "971130008"}


async def test_a_leased_queue_is_not_claimed_again_until_its_lease_ends(
    store: JournalStore,
) -> None:
    await store.enqueue([entry(0)], NOW)
    assert await claim(store, "a", NOW, LEASE) == (PLACE, TEST_PEOPLE[0].national_id)
    assert await claim(store, "b", NOW, LEASE) is None
    assert await claim(store, "b", NOW + LEASE + timedelta(seconds=1), LEASE) is not None


async def test_the_head_is_the_lowest_waiting_sequence_and_alarm_steps_never_block(
    store: JournalStore,
) -> None:
    held, first, second = entry(kind="alarm_step"), entry(), entry()
    await store.enqueue([held, first, second], NOW)
    head = await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW)
    assert head is not None
    assert head.entry_id == first.entry_id
    assert await claim(store, "w", NOW, LEASE) is not None
    assert await store.journaled(head, "w", NOW, "n")
    after = await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW)
    assert after is not None
    assert after.entry_id == second.entry_id


async def test_a_retrying_head_holds_its_queue_until_due_and_a_dead_one_leaves_it(
    store: JournalStore,
) -> None:
    first, second = entry(), entry()
    await store.enqueue([first, second], NOW)
    assert await claim(store, "w", NOW, LEASE) is not None
    head = await stored(store, first.entry_id)
    later = NOW + timedelta(minutes=1)
    assert await store.retrying(head, "w", NOW, later, "EPJ_TIMEOUT")
    await store.release(PLACE, TEST_PEOPLE[0].national_id, "w")
    assert await store.head(PLACE, TEST_PEOPLE[0].national_id, NOW) is None
    assert await claim(store, "w", NOW, LEASE) is None  # the head is not due
    assert await claim(store, "w", later, LEASE) is not None
    assert await store.dead(await stored(store, first.entry_id), "w", later, "EPJ_REJECTED_400")
    nxt = await store.head(PLACE, TEST_PEOPLE[0].national_id, later)
    assert nxt is not None
    assert nxt.entry_id == second.entry_id


async def test_a_worker_whose_lease_was_taken_over_cannot_change_the_entry(
    store: JournalStore,
) -> None:
    only = entry()
    await store.enqueue([only], NOW)
    assert await claim(store, "slow", NOW, LEASE) is not None
    late = NOW + LEASE + timedelta(seconds=1)
    assert await claim(store, "fresh", late, LEASE) is not None
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
    assert await claim(store, "w", NOW, LEASE) is not None
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
    assert not await any_due(store, NOW)
    first = entry()
    await store.enqueue([first], NOW)
    assert await any_due(store, NOW)
    assert not await any_due(store, NOW, paused=[PLACE])
    assert await claim(store, "w", NOW, LEASE) is not None
    assert not await any_due(store, NOW)  # leased


OTHER_PLACE = "971130008"


def elsewhere(patient: int = 0) -> NewEntry:
    return dataclasses.replace(entry(patient), municipality=OTHER_PLACE)


async def test_a_queue_is_due_from_its_head_then_its_lease_then_its_retry_and_not_once_empty(
    store: JournalStore,
) -> None:
    first, second = entry(), entry()
    patient = TEST_PEOPLE[0].national_id
    await store.enqueue([first, second], NOW)
    assert await store.dues() == {PLACE: NOW}
    assert await claim(store, "w", NOW, LEASE) is not None
    assert await store.dues() == {PLACE: NOW + LEASE}  # a worker that dies frees it then
    later = NOW + timedelta(minutes=1)
    assert await store.retrying(await stored(store, first.entry_id), "w", NOW, later, "EPJ_TIMEOUT")
    await store.release(PLACE, patient, "w")
    assert await store.dues() == {PLACE: later}
    assert await claim(store, "w", later, LEASE) is not None
    for each in (first, second):
        assert await store.journaled(await stored(store, each.entry_id), "w", later, "n")
    await store.release(PLACE, patient, "w")
    assert await store.dues() == {}


async def test_a_queue_of_alarm_steps_only_is_never_due(store: JournalStore) -> None:
    await store.enqueue([entry(kind="alarm_step")], NOW)
    assert await store.dues() == {}
    assert await claim(store, "w", NOW, LEASE) is None


async def test_an_entry_enqueued_while_its_queue_is_leased_is_due_once_released(
    store: JournalStore,
) -> None:
    first, second = entry(), entry()
    patient = TEST_PEOPLE[0].national_id
    await store.enqueue([first], NOW)
    assert await claim(store, "w", NOW, LEASE) is not None
    assert await store.journaled(await stored(store, first.entry_id), "w", NOW, "n")
    await store.enqueue([second], NOW + timedelta(seconds=1))
    await store.release(PLACE, patient, "w")
    assert await store.dues() == {PLACE: NOW + timedelta(seconds=1)}  # the new head's own time


async def test_a_dead_letter_put_back_makes_its_emptied_queue_due_again(
    store: JournalStore,
) -> None:
    only = entry()
    await store.enqueue([only], NOW)
    assert await claim(store, "w", NOW, LEASE) is not None
    assert await store.dead(await stored(store, only.entry_id), "w", NOW, "EPJ_REJECTED_400")
    await store.release(PLACE, TEST_PEOPLE[0].national_id, "w")
    assert await store.dues() == {}
    later = NOW + timedelta(minutes=1)
    assert await store.requeue(only.entry_id, later, states=RETRYABLE) is EntryState.DEAD
    assert await store.dues() == {PLACE: later}


async def test_a_claim_goes_to_the_first_municipality_in_its_order_with_a_due_queue(
    store: JournalStore,
) -> None:
    await store.enqueue([entry(0), entry(1), entry(2)], NOW)
    await store.enqueue([elsewhere(3)], NOW + timedelta(seconds=1))
    assert set(await store.dues()) == {PLACE, OTHER_PLACE}
    claimed = await store.claim_head("w", NOW + LEASE, LEASE, order=[OTHER_PLACE, PLACE])
    assert claimed is not None
    assert claimed.municipality == OTHER_PLACE
    assert claimed.head is not None
    assert not claimed.more
    # The other municipality has nothing due now: the next in the order.
    again = await claim(store, "w", NOW + LEASE, LEASE, order=[OTHER_PLACE, PLACE])
    assert again is not None
    assert again[0] == PLACE
    assert await claim(store, "w", NOW + LEASE, LEASE, order=[OTHER_PLACE]) is None
    assert await store.dues(paused=[PLACE]) == {OTHER_PLACE: NOW + LEASE * 2}


async def test_within_a_municipality_the_queue_due_longest_is_claimed_first(
    store: JournalStore,
) -> None:
    for n, patient in enumerate((2, 0, 1)):
        await store.enqueue([entry(patient)], NOW + timedelta(seconds=n))
    later = NOW + timedelta(minutes=1)
    claimed = [await claim(store, "w", later, LEASE) for _ in range(3)]
    assert [c[1] if c else "" for c in claimed] == [TEST_PEOPLE[p].national_id for p in (2, 0, 1)]


def _upgrade_to(connection: sa.Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files(MIGRATIONS)))
    config.attributes.update(connection=connection, version_table=VERSION_TABLE)
    command.upgrade(config, revision)


async def test_migration_0002_gives_the_queues_of_0001_their_due_times(database_url: str) -> None:
    """A database at 0001 with a queue waiting for a retry, one leased, one emptied and one of
    alarm steps only: after 0002 each has the due time a claim goes by."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001")
            retry_at = NOW + timedelta(minutes=5)
            leased_until = datetime.now(UTC) + timedelta(hours=1)
            rows = [  # patient, kind, state, next attempt
                (0, "home_measurement", "JOURNALED", None),
                (0, "home_measurement", "RETRYING", retry_at),
                (0, "home_measurement", "QUEUED", None),
                (1, "home_measurement", "QUEUED", None),
                (2, "home_measurement", "JOURNALED", None),
                (3, "alarm_step", "QUEUED", None),
            ]
            for sequence, (patient, kind, state, at) in enumerate(rows, start=1):
                values = dataclasses.asdict(entry(patient, kind=kind))
                del values["alarm_id"], values["closes_alarm"]  # columns of 0004 / none
                values.update(
                    sequence=sequence,
                    state=state,
                    attempts=0,
                    next_attempt_time=at,
                    last_error_reason="",
                    create_time=NOW,
                    update_time=NOW,
                    journaled_time=None,
                    note_identifier="",
                    audit_pending=False,
                )
                await connection.execute(sa.insert(entries).values(values))
            for patient in range(4):
                await connection.execute(
                    sa.insert(queues).values(
                        municipality=PLACE,
                        patient=TEST_PEOPLE[patient].national_id,
                        last_sequence=6,
                        lease_owner="old" if patient == 1 else "",
                        lease_until=leased_until if patient == 1 else EPOCH,
                    )
                )
    finally:
        await engine.dispose()
    db = Database.from_url(database_url, name="journaling")
    await db.start()
    try:
        store = JournalStore(db)
        await store.migrate()
        async with db.read() as session:
            due = {
                patient: aware(at) if at is not None else None
                for patient, at in await session.execute(
                    sa.select(queues.c.patient, queues.c.due_time)
                )
            }
        assert due == {
            TEST_PEOPLE[0].national_id: retry_at,  # the head is the retried note
            TEST_PEOPLE[1].national_id: leased_until,
            TEST_PEOPLE[2].national_id: None,
            TEST_PEOPLE[3].national_id: None,
        }
        assert await store.dues() == {PLACE: retry_at}
        claimed = await store.claim_head("w", leased_until + LEASE, LEASE)
        assert claimed is not None  # due longest: the retry, before the old lease's expiry
        assert claimed.patient == TEST_PEOPLE[0].national_id
        assert claimed.head is not None
        assert (claimed.head.state, claimed.more) == (EntryState.RETRYING, True)
    finally:
        await db.close()
