"""The journaling use cases without a server or a database: an in-memory store behind the same
interface (EntryStore)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vkp_journaling.domain.audit import audit_record_id
from vkp_journaling.domain.entry import Enqueued, Entry, EntryState, NewEntry, Page
from vkp_journaling.domain.reasons import Reason
from vkp_journaling.service import JournalingService
from vkp_lib.errors import FailedPrecondition, NotFound
from vkp_lib.testing.data import TEST_PEOPLE

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PLACE = "964120005"
PATIENT = TEST_PEOPLE[0].national_id


def new_entry(entry_id: str) -> NewEntry:
    return NewEntry(
        entry_id=entry_id,
        municipality=PLACE,
        patient=PATIENT,
        kind="home_measurement",
        event_id=f"evt-{entry_id}",
        service_code="DHO",
        vendor_system="vendors/912340007/systems/dispenser-cloud",
        client_id="dosetta-dispenser",
        event=b"",
        traceparent="",
        occurred_time=NOW,
        receive_time=NOW,
    )


class FakeStore:
    """The store's behaviour in a dict: enqueue once per id, requeue from the given states."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.pages: list[tuple[str, str, EntryState | None]] = []
        self.audited_ids: list[str] = []
        self.enqueued_at: list[datetime] = []

    async def enqueue(self, items: Sequence[NewEntry], now: datetime) -> list[Enqueued]:
        self.enqueued_at.append(now)
        results = []
        for item in items:
            created = item.entry_id not in self.entries
            if created:
                self.entries[item.entry_id] = Entry(
                    **dataclasses.asdict(item),
                    sequence=len(self.entries) + 1,
                    state=EntryState.QUEUED,
                    attempts=0,
                    next_attempt_time=None,
                    last_error_reason="",
                    create_time=now,
                    update_time=now,
                    journaled_time=None,
                    note_identifier="",
                )
            results.append(Enqueued(item.entry_id, created, self.entries[item.entry_id].state))
        return results

    async def get(self, entry_id: str) -> Entry | None:
        return self.entries.get(entry_id)

    async def page(
        self,
        municipality: str,
        *,
        patient: str = "",
        state: EntryState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page:
        self.pages.append((municipality, patient, state))
        found = [e for e in self.entries.values() if state is None or e.state is state]
        return Page(found, "")

    async def requeue(
        self, entry_id: str, now: datetime, *, states: Sequence[EntryState]
    ) -> EntryState | None:
        entry = self.entries.get(entry_id)
        if entry is None:
            return None
        if entry.state in states:
            self.entries[entry_id] = dataclasses.replace(
                entry, state=EntryState.QUEUED, attempts=0, last_error_reason="", update_time=now
            )
        return entry.state

    async def audit_pending(self, limit: int = 200) -> list[Entry]:
        journaled = [e for e in self.entries.values() if e.state is EntryState.JOURNALED]
        return [e for e in journaled if e.entry_id not in self.audited_ids][:limit]

    async def audited(self, entry_ids: Sequence[str]) -> None:
        self.audited_ids += entry_ids

    def set(self, entry_id: str, **changes: Any) -> None:
        self.entries[entry_id] = dataclasses.replace(self.entries[entry_id], **changes)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(store: FakeStore) -> JournalingService:
    return JournalingService(store, clock=lambda: NOW)


async def test_enqueue_answers_each_item_in_order_and_a_repeat_is_not_created_again(
    service: JournalingService, store: FakeStore
) -> None:
    first = await service.enqueue([new_entry("a"), new_entry("b")])
    again = await service.enqueue([new_entry("b")])
    assert [(r.entry_id, r.created, r.state) for r in first + again] == [
        ("a", True, EntryState.QUEUED),
        ("b", True, EntryState.QUEUED),
        ("b", False, EntryState.QUEUED),
    ]
    assert store.enqueued_at == [NOW, NOW]  # the service's clock


async def test_get_entry_of_an_unknown_id_is_entry_not_found(service: JournalingService) -> None:
    with pytest.raises(NotFound) as missing:
        await service.get_entry("nope")
    assert missing.value.reason == Reason.ENTRY_NOT_FOUND


async def test_retry_entry_puts_a_dead_letter_back_with_its_attempts_from_zero(
    service: JournalingService, store: FakeStore
) -> None:
    await service.enqueue([new_entry("a")])
    store.set("a", state=EntryState.DEAD, attempts=8, last_error_reason="EPJ_REJECTED_400")
    back = await service.retry_entry("a")
    assert (back.state, back.attempts, back.last_error_reason) == (EntryState.QUEUED, 0, "")


@pytest.mark.parametrize("state", [EntryState.QUEUED, EntryState.RETRYING, EntryState.JOURNALED])
async def test_retry_entry_of_a_living_entry_is_entry_not_dead_and_changes_nothing(
    service: JournalingService, store: FakeStore, state: EntryState
) -> None:
    await service.enqueue([new_entry("a")])
    store.set("a", state=state, attempts=2)
    with pytest.raises(FailedPrecondition) as refused:
        await service.retry_entry("a")
    assert refused.value.reason == Reason.ENTRY_NOT_DEAD
    assert (store.entries["a"].state, store.entries["a"].attempts) == (state, 2)


async def test_retry_entry_of_an_unknown_id_is_entry_not_found(service: JournalingService) -> None:
    with pytest.raises(NotFound) as missing:
        await service.retry_entry("nope")
    assert missing.value.reason == Reason.ENTRY_NOT_FOUND


async def test_dead_letters_are_the_municipalitys_entries_in_state_dead(
    service: JournalingService, store: FakeStore
) -> None:
    await service.enqueue([new_entry("a"), new_entry("b")])
    store.set("b", state=EntryState.DEAD)
    page = await service.list_dead_letters(PLACE)
    assert [e.entry_id for e in page.entries] == ["b"]
    assert store.pages == [(PLACE, "", EntryState.DEAD)]


async def test_the_audit_records_owed_are_keyed_by_entry_and_carry_the_derived_id(
    service: JournalingService, store: FakeStore
) -> None:
    await service.enqueue([new_entry("a"), new_entry("b")])
    journaled = NOW + timedelta(seconds=5)
    store.set("a", state=EntryState.JOURNALED, journaled_time=journaled, note_identifier="a/1")
    ((key, record),) = await service.audit_owed(10)
    assert key == "a"
    assert record.record_id == audit_record_id("a")
    assert record.resource == "journal note a/1"
    assert record.actor.organization_number == "912340007"
    assert [p.value for p in record.patients] == [PATIENT]
    assert record.occurred_time.ToDatetime(tzinfo=UTC) == journaled
    await service.audit_sent([key])
    assert await service.audit_owed(10) == []


async def test_the_workers_are_told_of_the_entries_newly_queued_and_of_a_dead_letter_put_back(
    store: FakeStore,
) -> None:
    told: list[int] = []
    service = JournalingService(store, clock=lambda: NOW, on_queued=told.append)
    await service.enqueue([new_entry("a"), new_entry("b")])
    await service.enqueue([new_entry("a")])  # a repeat: nothing new to deliver
    store.set("a", state=EntryState.DEAD)
    await service.retry_entry("a")
    with pytest.raises(FailedPrecondition):
        await service.retry_entry("b")  # not dead: nothing queued
    assert told == [2, 1]
