"""The journaling service's use cases: taking entries from ingest, reading them, and an operator's
dead letters; and the audit records owed for delivered notes (the outbox the audit relay reads).
Delivery itself is a background task (`vkp_journaling.delivery`).

ListPending and Acknowledge (EPJs that pull) come with the pull-mode step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from vkp.audit.v1 import audit_pb2
from vkp_journaling import convert
from vkp_journaling.domain.entry import (
    RETRYABLE,
    Enqueued,
    Entry,
    EntryState,
    NewEntry,
    Page,
    check_retryable,
)
from vkp_journaling.domain.reasons import Reason
from vkp_lib.errors import NotFound


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
    ) -> None:
        self._store = store
        self._clock = clock
        #: Told how many entries were newly queued, once committed (delivery's wake-up).
        self._on_queued = on_queued

    async def enqueue(self, items: Sequence[NewEntry]) -> list[Enqueued]:
        """Stores the entries that are new, each numbered in its patient's queue; a repeated
        entry id changes nothing. One result per item, in order, once committed."""
        results = await self._store.enqueue(items, self._clock())
        if created := sum(r.created for r in results):
            self._on_queued(created)
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
