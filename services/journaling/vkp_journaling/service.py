"""The journaling service's use cases: taking entries from ingest, reading them, and an operator's
dead letters; and the audit records owed for delivered notes (the outbox the audit relay reads).
Delivery itself is a background task (`vkp_journaling.delivery`).

EPJs that pull (ListPending, Acknowledge) are served by `PullService`: who may ask, the page of
notes by cursor (vkp_journaling.domain.pull) and the answers about them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vkp.audit.v1 import audit_pb2
from vkp_journaling import convert
from vkp_journaling.dead_letters import DeadLetters
from vkp_journaling.domain import pull
from vkp_journaling.domain.delivery import Failure
from vkp_journaling.domain.entry import (
    ALARM_STEP,
    RETRYABLE,
    Enqueued,
    Entry,
    EntryState,
    NewEntry,
    Page,
    check_retryable,
)
from vkp_journaling.domain.reasons import Reason
from vkp_journaling.epj import fhir_json
from vkp_journaling.journaled import JournaledNotes
from vkp_lib import paging
from vkp_lib.auth import Principal
from vkp_lib.errors import NotFound, VkpError
from vkp_lib.fhir import Endpoint
from vkp_lib.logging import get_logger

log = get_logger("vkp.journaling.pull")


class EntryStore(Protocol):
    """What the use cases need of the store (vkp_journaling.store.JournalStore)."""

    async def enqueue(self, items: Sequence[NewEntry], now: datetime) -> list[Enqueued]: ...

    async def get(self, entry_id: str) -> Entry | None: ...

    async def page(
        self,
        municipality: str,
        *,
        patient: str = "",
        state: EntryState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page: ...

    async def requeue(
        self, entry_id: str, now: datetime, *, states: Sequence[EntryState]
    ) -> EntryState | None: ...

    async def audit_pending(self, limit: int = 200) -> list[Entry]: ...

    async def audited(self, entry_ids: Sequence[str]) -> None: ...


def _not_found() -> NotFound:
    return NotFound(Reason.ENTRY_NOT_FOUND, "no such entry")


class JournalingService:
    def __init__(
        self,
        store: EntryStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_queued: Callable[[int], None] = lambda entries: None,
        on_alarm_steps: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        #: Told when new alarm steps were stored, once committed (the alarm cut's wake-up).
        self._on_alarm_steps = on_alarm_steps
        #: Told how many entries were newly queued, once committed (delivery's wake-up).
        self._on_queued = on_queued

    async def enqueue(self, items: Sequence[NewEntry]) -> list[Enqueued]:
        """Stores the entries that are new, each numbered in its patient's queue; a repeated
        entry id changes nothing. One result per item, in order, once committed."""
        results = await self._store.enqueue(items, self._clock())
        if created := sum(r.created for r in results):
            self._on_queued(created)
            if any(r.created and i.kind == ALARM_STEP for i, r in zip(items, results, strict=True)):
                self._on_alarm_steps()
        return results

    async def get_entry(self, entry_id: str) -> Entry:
        entry = await self._store.get(entry_id)
        if entry is None:
            raise _not_found()
        return entry

    async def list_entries(
        self,
        municipality: str,
        *,
        patient: str = "",
        state: EntryState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page:
        """A municipality's entries: a patient's in queue order, else newest first."""
        return await self._store.page(
            municipality,
            patient=patient,
            state=state,
            page_size=page_size,
            page_token=page_token,
        )

    async def list_dead_letters(
        self, municipality: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page:
        return await self._store.page(
            municipality, state=EntryState.DEAD, page_size=page_size, page_token=page_token
        )

    async def retry_entry(self, entry_id: str) -> Entry:
        """Puts a dead letter back in its patient's queue, at its place (attempts from zero)."""
        found = await self._store.requeue(entry_id, self._clock(), states=RETRYABLE)
        if found is None:
            raise _not_found()
        check_retryable(found)
        self._on_queued(1)
        return await self.get_entry(entry_id)

    # -- the audit outbox ----------------------------------------------------------------------

    async def audit_owed(self, limit: int) -> list[tuple[str, audit_pb2.AuditRecord]]:
        """The audit records still owed for delivered notes, keyed by entry id."""
        return [
            (e.entry_id, convert.audit_record(e)) for e in await self._store.audit_pending(limit)
        ]

    async def audit_sent(self, entry_ids: Sequence[str]) -> None:
        await self._store.audited(entry_ids)


# -- pull mode -------------------------------------------------------------------------------------


class PullStore(Protocol):
    """What pull mode needs of the store (vkp_journaling.store.JournalStore)."""

    async def pending(
        self,
        municipality: str,
        *,
        page_token: str,
        page_size: int,
        now: datetime,
        read_until: datetime,
    ) -> pull.PulledPage: ...

    async def unrenderable(
        self, entry_ids: Sequence[str], now: datetime, reason: str
    ) -> list[str]: ...

    async def acknowledge(
        self,
        municipality: str,
        acknowledgements: Sequence[pull.Acknowledgement],
        now: datetime,
        note_identifier: Callable[[str], str],
    ) -> list[pull.Apply | pull.Keep | VkpError]: ...


class PullEndpoints(Protocol):
    """Municipalities' EPJ endpoints (vkp_lib.fhir.EndpointDirectory)."""

    async def get(self, municipality: str) -> Endpoint | None: ...


class PullService:
    """ListPending and Acknowledge, for an EPJ (scope vkp:epj) of a municipality whose endpoint
    is in pull mode: its own municipality's notes only."""

    def __init__(
        self,
        store: PullStore,
        endpoints: PullEndpoints,
        note_of: Callable[[Entry], Awaitable[dict[str, Any]]],
        *,
        read_timeout: timedelta,
        note_identifier: Callable[[str], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_journaled: Callable[[], None] = lambda: None,
        dead_letters: DeadLetters | None = None,
        journaled: JournaledNotes | None = None,
    ) -> None:
        self._store = store
        self._endpoints = endpoints
        #: A note made a dead letter here is one alert, as a pushed one is; one acknowledged
        #: as journaled counts as a pushed one does.
        self._dead_letters = dead_letters or DeadLetters()
        self._journaled = journaled or JournaledNotes()
        #: The FHIR Bundle of an entry's note, as delivery makes it.
        self._note_of = note_of
        self._read_timeout = read_timeout
        self._note_identifier = note_identifier
        self._clock = clock
        #: Told once acknowledged notes are committed as journaled (the audit relay's wake-up).
        self._on_journaled = on_journaled

    async def _check(self, caller: Principal, municipality: str) -> None:
        pull.check_caller(caller.organization_number, municipality)
        endpoint = await self._endpoints.get(municipality)
        pull.check_pull_mode(endpoint is not None and endpoint.pull)

    async def list_pending(
        self, caller: Principal, municipality: str, *, page_size: int = 0, page_token: str = ""
    ) -> pull.PendingPage:
        """The next notes after the cursor (empty: from the oldest not acknowledged), numbered
        and marked READ in one transaction; a note that makes no note is a dead letter."""
        await self._check(caller, municipality)
        now = self._clock()
        page = await self._store.pending(
            municipality,
            page_token=page_token,
            page_size=page_size or pull.DEFAULT_PAGE_SIZE,
            now=now,
            read_until=now + self._read_timeout,
        )
        notes: list[pull.PendingNote] = []
        unrenderable: list[str] = []
        for entry in page.entries:
            try:
                bundle = await self._note_of(entry)
            except Exception as exc:
                log.error(
                    "note not rendered", entry_id=entry.entry_id, error_type=type(exc).__name__
                )
                unrenderable.append(entry.entry_id)
                continue
            notes.append(pull.PendingNote(entry, fhir_json(bundle)))
        if unrenderable:
            dead = await self._store.unrenderable(unrenderable, now, Failure.RENDER_FAILED)
            for entry_id in dead:
                self._dead_letters.dead(entry_id, municipality, Failure.RENDER_FAILED)
        return pull.PendingPage(notes, paging.page_token((str(page.cursor),), municipality))

    async def acknowledge(
        self,
        caller: Principal,
        municipality: str,
        acknowledgements: Sequence[pull.Acknowledgement],
    ) -> list[EntryState | VkpError]:
        """Each answer applied in one transaction: the entry's state now, or why not."""
        await self._check(caller, municipality)
        done = await self._store.acknowledge(
            municipality, acknowledgements, self._clock(), self._note_identifier
        )
        changed = [d.state for d in done if isinstance(d, pull.Apply)]
        for ack, decision in zip(acknowledgements, done, strict=True):
            if isinstance(decision, pull.Apply) and decision.state is EntryState.DEAD:
                # The EPJ's words stay in the entry: they may name the patient.
                self._dead_letters.dead(ack.entry_id, municipality, pull.EPJ_REFUSED)
        if journaled := changed.count(EntryState.JOURNALED):
            self._journaled.journaled(municipality, journaled)
            self._on_journaled()
        return [d if isinstance(d, VkpError) else d.state for d in done]
