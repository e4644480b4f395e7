"""Pull mode's pure rules (vkp_journaling.domain.pull) and its store on SQLite and PostgreSQL: the
numbering of notes (taken order, each patient's in queue order), the cursor, who may pull, what
an acknowledgement does; a page by cursor, notes offered again after the read timeout, and the
acknowledgements written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from vkp_journaling.dead_letters import COUNTER, DeadLetters
from vkp_journaling.domain.entry import Entry, EntryState, NewEntry
from vkp_journaling.domain.pull import (
    EPJ_REFUSED,
    Acknowledgement,
    Apply,
    Keep,
    Offered,
    Outcome,
    Unnumbered,
    acknowledge,
    check_caller,
    check_cursor,
    check_pull_mode,
    number_on,
    refused,
)
from vkp_journaling.domain.reasons import Reason
from vkp_journaling.journaled import COUNTER as JOURNALED_COUNTER
from vkp_journaling.journaled import JournaledNotes
from vkp_journaling.service import PullService
from vkp_journaling.store import JournalStore
from vkp_lib import paging
from vkp_lib.auth import Principal, PrincipalKind
from vkp_lib.db import Database
from vkp_lib.errors import (
    ErrorKind,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    VkpError,
)
from vkp_lib.fhir import Endpoint
from vkp_lib.testing.data import TEST_PEOPLE

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PLACE = "980250008"
OTHER = "964120005"
SECOND = timedelta(seconds=1)
READ_TIMEOUT = timedelta(minutes=5)


def unnumbered(entry_id: str, patient: str, sequence: int, seconds: float) -> Unnumbered:
    return Unnumbered(entry_id, patient, sequence, NOW + timedelta(seconds=seconds))


# -- numbering ---------------------------------------------------------------------------------


def test_notes_are_numbered_on_from_the_counter_in_the_order_they_were_taken() -> None:
    notes = [
        unnumbered("b1", "B", 1, 2),
        unnumbered("a1", "A", 1, 1),
        unnumbered("a2", "A", 2, 3),
    ]
    assert number_on(40, notes) == [("a1", 41), ("b1", 42), ("a2", 43)]


def test_a_patients_notes_keep_their_queue_order_when_their_times_disagree() -> None:
    # A2 was taken "before" A1 by another replica's clock: A's notes swap numbers, B's stay.
    notes = [
        unnumbered("a1", "A", 1, 5),
        unnumbered("b1", "B", 1, 2),
        unnumbered("a2", "A", 2, 1),
    ]
    numbered = dict(number_on(0, notes))
    assert numbered == {"a1": 1, "b1": 2, "a2": 3}


def test_nothing_to_number_hands_out_nothing() -> None:
    assert number_on(7, []) == []


# -- the cursor --------------------------------------------------------------------------------


def test_a_cursor_is_a_number_handed_out_and_one_beyond_the_counter_is_refused() -> None:
    assert check_cursor(0, 0) == 0
    assert check_cursor(12, 12) == 12
    with pytest.raises(ValueError, match="beyond"):
        check_cursor(13, 12)
    with pytest.raises(ValueError, match="beyond"):
        check_cursor(-1, 12)


def test_a_cursor_beyond_the_counter_is_an_invalid_page_token() -> None:
    token = paging.page_token(("13",), PLACE)
    with pytest.raises(InvalidArgument) as caught:
        paging.position(token, PLACE, lambda parts: check_cursor(int(parts[0]), 12))
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    assert paging.position(token, PLACE, lambda parts: check_cursor(int(parts[0]), 13)) == 13


def test_another_municipalitys_cursor_is_an_invalid_page_token() -> None:
    token = paging.page_token(("3",), OTHER)
    with pytest.raises(InvalidArgument):
        paging.position(token, PLACE, lambda parts: check_cursor(int(parts[0]), 12))


# -- who may pull ------------------------------------------------------------------------------


def test_an_epj_pulls_only_its_own_municipality() -> None:
    check_caller(PLACE, PLACE)
    with pytest.raises(PermissionDenied) as caught:
        check_caller(OTHER, PLACE)
    assert caught.value.reason == Reason.WRONG_MUNICIPALITY
    with pytest.raises(PermissionDenied):
        check_caller("", PLACE)


def test_a_municipality_pushed_to_cannot_be_pulled() -> None:
    check_pull_mode(True)
    with pytest.raises(FailedPrecondition) as caught:
        check_pull_mode(False)
    assert caught.value.reason == Reason.NOT_PULL_MODE


# -- acknowledgements --------------------------------------------------------------------------

READ = Offered(PLACE, EntryState.READ, 5)


def test_an_offered_note_is_journaled_or_dead_as_the_epj_says() -> None:
    assert acknowledge(READ, PLACE, Outcome.JOURNALED) == Apply(EntryState.JOURNALED)
    assert acknowledge(READ, PLACE, Outcome.REJECTED) == Apply(EntryState.DEAD)
    offered_again = Offered(PLACE, EntryState.QUEUED, 9)
    assert acknowledge(offered_again, PLACE, Outcome.JOURNALED) == Apply(EntryState.JOURNALED)


def test_a_repeated_acknowledgement_answers_the_state_the_first_gave() -> None:
    journaled = Offered(PLACE, EntryState.JOURNALED, 5)
    assert acknowledge(journaled, PLACE, Outcome.JOURNALED) == Keep(EntryState.JOURNALED)
    dead = Offered(PLACE, EntryState.DEAD, 5)
    assert acknowledge(dead, PLACE, Outcome.REJECTED) == Keep(EntryState.DEAD)


def test_an_acknowledgement_other_than_the_one_that_ended_the_note_is_refused() -> None:
    journaled = Offered(PLACE, EntryState.JOURNALED, 5)
    error = acknowledge(journaled, PLACE, Outcome.REJECTED)
    assert isinstance(error, FailedPrecondition)
    assert error.reason == Reason.ENTRY_ALREADY_FINAL


def test_an_unknown_entry_and_another_municipalitys_are_alike_not_found() -> None:
    for found in (None, Offered(OTHER, EntryState.READ, 5)):
        error = acknowledge(found, PLACE, Outcome.JOURNALED)
        assert not isinstance(error, (Apply, Keep))
        assert (error.kind, error.reason) == (ErrorKind.NOT_FOUND, Reason.ENTRY_NOT_FOUND)


def test_a_note_never_offered_cannot_be_acknowledged() -> None:
    error = acknowledge(Offered(PLACE, EntryState.QUEUED, None), PLACE, Outcome.JOURNALED)
    assert isinstance(error, FailedPrecondition)
    assert error.reason == Reason.ENTRY_NOT_READ


def test_a_refused_notes_reason_carries_the_epjs_words_on_one_line() -> None:
    assert refused("") == EPJ_REFUSED
    assert refused("  unknown\n  patient ") == f"{EPJ_REFUSED}: unknown patient"


# -- the store ---------------------------------------------------------------------------------


def new_entry(patient: int, kind: str = "home_measurement", place: str = PLACE) -> NewEntry:
    return NewEntry(
        entry_id=str(uuid.uuid4()),
        municipality=place,
        patient=TEST_PEOPLE[patient].national_id,
        kind=kind,
        event_id=f"evt-{uuid.uuid4().hex[:8]}",
        service_code="DHO",
        vendor_system="vendors/945670002/systems/home-follow-up",
        client_id="helsemaler-dho",
        event=b"",
        traceparent="",
        occurred_time=NOW,
        receive_time=NOW,
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JournalStore]:
    db = Database.from_url(database_url, name="journaling")
    await db.start()
    journal = JournalStore(db)
    await journal.migrate()
    yield journal
    await db.close()


async def pending(
    store: JournalStore, token: str = "", *, size: int = 50, now: datetime = NOW
) -> tuple[list[str], str]:
    page = await store.pending(
        PLACE, page_token=token, page_size=size, now=now, read_until=now + READ_TIMEOUT
    )
    return [e.entry_id for e in page.entries], paging.page_token((str(page.cursor),), PLACE)


def note(entry_id: str) -> str:
    return f"{entry_id}/1"


async def test_pages_by_cursor_see_each_note_once_in_queue_order_and_none_of_another_place(
    store: JournalStore,
) -> None:
    first = [new_entry(0), new_entry(1), new_entry(0)]
    alarm = new_entry(1, kind="alarm_step")
    elsewhere = new_entry(2, place=OTHER)
    await store.enqueue([*first, alarm, elsewhere], NOW)
    seen, token = await pending(store, size=2)
    more, token = await pending(store, token, size=2)
    # Each once, patient 0's in queue order; held alarm steps are never notes.
    assert sorted(seen + more) == sorted(e.entry_id for e in first)
    theirs = [i for i in seen + more if i in {first[0].entry_id, first[2].entry_id}]
    assert theirs == [first[0].entry_id, first[2].entry_id]
    later = [new_entry(1)]
    await store.enqueue(later, NOW + SECOND)
    last = [new_entry(0)]
    await store.enqueue(last, NOW + 2 * SECOND)
    after, token = await pending(store, token)
    assert after == [later[0].entry_id, last[0].entry_id]
    assert (await pending(store, token))[0] == []
    stored = await store.get(first[0].entry_id)
    assert stored is not None
    assert stored.state is EntryState.READ


async def test_a_first_page_starts_at_the_oldest_note_not_acknowledged(
    store: JournalStore,
) -> None:
    items = [new_entry(0), new_entry(0), new_entry(1)]
    await store.enqueue(items, NOW)
    seen, _ = await pending(store)
    await store.acknowledge(PLACE, [Acknowledgement(seen[0], Outcome.JOURNALED)], NOW, note)
    again, _ = await pending(store)  # a reader that lost its cursor
    assert again == seen[1:]


async def test_a_note_not_acknowledged_in_time_comes_again_after_the_cursor(
    store: JournalStore,
) -> None:
    items = [new_entry(0), new_entry(1)]
    await store.enqueue(items, NOW)
    _, token = await pending(store)
    await store.acknowledge(
        PLACE, [Acknowledgement(items[1].entry_id, Outcome.JOURNALED)], NOW, note
    )
    assert (await pending(store, token, now=NOW + READ_TIMEOUT - SECOND))[0] == []
    again, token = await pending(store, token, now=NOW + READ_TIMEOUT)
    assert again == [items[0].entry_id]
    assert (await pending(store, token, now=NOW + READ_TIMEOUT))[0] == []


async def test_acknowledgements_journal_refuse_repeat_and_keep_other_places_apart(
    store: JournalStore,
) -> None:
    items = [new_entry(0), new_entry(1), new_entry(2)]
    never_offered = new_entry(3)
    elsewhere = new_entry(4, place=OTHER)
    await store.enqueue(items, NOW)
    await pending(store)
    await store.enqueue([never_offered, elsewhere], NOW)
    # Enqueued after the last ListPending: never numbered, never offered.
    results = await store.acknowledge(
        PLACE,
        [
            Acknowledgement(items[0].entry_id, Outcome.JOURNALED),
            Acknowledgement(items[1].entry_id, Outcome.REJECTED, "unknown\npatient"),
            Acknowledgement(items[0].entry_id, Outcome.JOURNALED),
            Acknowledgement(items[0].entry_id, Outcome.REJECTED),
            Acknowledgement(never_offered.entry_id, Outcome.JOURNALED),
            Acknowledgement(elsewhere.entry_id, Outcome.JOURNALED),
            Acknowledgement("no-such-entry", Outcome.JOURNALED),
        ],
        NOW,
        note,
    )
    answers = [r.reason if isinstance(r, VkpError) else r.state for r in results]
    assert answers == [
        EntryState.JOURNALED,
        EntryState.DEAD,
        EntryState.JOURNALED,
        Reason.ENTRY_ALREADY_FINAL,
        Reason.ENTRY_NOT_READ,
        Reason.ENTRY_NOT_FOUND,
        Reason.ENTRY_NOT_FOUND,
    ]
    journaled = await store.get(items[0].entry_id)
    assert journaled is not None
    assert (journaled.state, journaled.note_identifier) == (
        EntryState.JOURNALED,
        note(items[0].entry_id),
    )
    assert journaled.journaled_time is not None
    assert [e.entry_id for e in await store.audit_pending()] == [items[0].entry_id]
    dead = await store.get(items[1].entry_id)
    assert dead is not None
    assert (dead.state, dead.last_error_reason) == (
        EntryState.DEAD,
        f"{EPJ_REFUSED}: unknown patient",
    )
    untouched = await store.get(elsewhere.entry_id)
    assert untouched is not None
    assert untouched.state is EntryState.QUEUED


async def test_a_dead_letter_put_back_is_numbered_again_after_the_cursor(
    store: JournalStore,
) -> None:
    item = new_entry(0)
    await store.enqueue([item], NOW)
    _, token = await pending(store)
    await store.acknowledge(PLACE, [Acknowledgement(item.entry_id, Outcome.REJECTED)], NOW, note)
    assert await store.requeue(item.entry_id, NOW, states=(EntryState.DEAD,)) is EntryState.DEAD
    again, _ = await pending(store, token)
    assert again == [item.entry_id]


async def test_a_municipality_that_pulls_no_more_has_its_read_notes_waiting_again(
    store: JournalStore,
) -> None:
    item = new_entry(0)
    await store.enqueue([item], NOW)
    await pending(store)
    await store.left_pull(PLACE, NOW)
    claim = await store.claim_head("worker", NOW, timedelta(seconds=30), order=[PLACE])
    assert claim is not None
    assert claim.head is not None
    assert claim.head.entry_id == item.entry_id


# -- dead letters: one alert each, as a pushed one ---------------------------------------------


class PullingEndpoints:
    async def get(self, municipality: str) -> Endpoint | None:
        return Endpoint(municipality=municipality, base_url="http://epj.invalid/fhir", pull=True)


def dead_letter_counts(reader: InMemoryMetricReader, name: str = COUNTER) -> dict[str, int]:
    """`vkp.journaling.dead_letters` (or the counter `name`) by municipality, as read now."""
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        place = str((point.attributes or {})["municipality"])
                        counts[place] = counts.get(place, 0) + int(point.value)
    return counts


async def test_a_refused_note_and_one_that_makes_no_note_are_each_one_dead_letter_counted_once(
    store: JournalStore,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    refused_item, unrenderable_item, fine = new_entry(0), new_entry(1), new_entry(2)
    await store.enqueue([refused_item, unrenderable_item, fine], NOW)

    async def note_of(entry: Entry) -> dict[str, Any]:
        if entry.entry_id == unrenderable_item.entry_id:
            raise ValueError("no note")
        return {"resourceType": "Bundle", "type": "transaction"}

    service = PullService(
        store,
        PullingEndpoints(),
        note_of,
        read_timeout=READ_TIMEOUT,
        note_identifier=note,
        clock=lambda: NOW,
        dead_letters=DeadLetters(provider),
        journaled=JournaledNotes(provider),
    )
    epj = Principal(PrincipalKind.VENDOR, "nordheim-epj", organization_number=PLACE)
    page = await service.list_pending(epj, PLACE)
    assert {n.entry.entry_id for n in page.notes} == {refused_item.entry_id, fine.entry_id}
    assert dead_letter_counts(reader) == {PLACE: 1}  # the one that makes no note
    answers = [
        Acknowledgement(refused_item.entry_id, Outcome.REJECTED, "unknown patient"),
        Acknowledgement(fine.entry_id, Outcome.JOURNALED),
    ]
    assert await service.acknowledge(epj, PLACE, answers) == [
        EntryState.DEAD,
        EntryState.JOURNALED,
    ]
    assert dead_letter_counts(reader) == {PLACE: 2}
    assert dead_letter_counts(reader, JOURNALED_COUNTER) == {PLACE: 1}  # as a pushed note is
    # A repeated answer answers the same and is no second alert, nor a second journaled note.
    assert await service.acknowledge(epj, PLACE, answers) == [
        EntryState.DEAD,
        EntryState.JOURNALED,
    ]
    assert dead_letter_counts(reader) == {PLACE: 2}
    assert dead_letter_counts(reader, JOURNALED_COUNTER) == {PLACE: 1}
    provider.shutdown()
