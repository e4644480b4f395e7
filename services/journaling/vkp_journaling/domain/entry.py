"""A journal entry: one event on its way into the patient's record, and its states.

Each patient has a queue: the entries numbered in the order they were taken (the per-patient
sequence). The queue's head is the lowest sequence still waiting (QUEUED or RETRYING); alarm
steps are held (never a head: the alarm's handling log journals them), so they never hold up the
patient's other notes. A JOURNALED or DEAD entry has left its queue; RetryEntry puts a dead one
back at its place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from vkp_journaling.domain.reasons import Reason
from vkp_lib import names
from vkp_lib.errors import FailedPrecondition


class EntryState(enum.StrEnum):
    """The contract's event-state vocabulary (`vkp.common.v1.EventState` without its prefix),
    the values the store writes. An entry is QUEUED, RETRYING, JOURNALED or DEAD (READ comes with
    pull mode); REGISTERED and REJECTED are ingest's, here only so that a listing filtered by
    them finds nothing rather than failing."""

    REGISTERED = "REGISTERED"
    QUEUED = "QUEUED"
    READ = "READ"
    JOURNALED = "JOURNALED"
    RETRYING = "RETRYING"
    DEAD = "DEAD"
    REJECTED = "REJECTED"


#: The states an entry waits in, in its patient's queue; the others are final until RetryEntry.
WAITING = (EntryState.QUEUED, EntryState.RETRYING)
#: The states RetryEntry puts back in the queue: only a dead letter.
RETRYABLE = (EntryState.DEAD,)
#: The payload kind that is stored but never delivered as a note of its own.
ALARM_STEP = "alarm_step"


@dataclass(frozen=True)
class NewEntry:
    """An event as Enqueue hands it over."""

    entry_id: str
    municipality: str
    patient: str
    #: The event's payload ("medication_dispense", ..., ALARM_STEP).
    kind: str
    event_id: str
    #: The service code without its prefix ("MD"), or empty.
    service_code: str
    #: vendors/{organization_number}/systems/{system_id}
    vendor_system: str
    client_id: str
    #: The event, serialized deterministically.
    event: bytes
    #: The W3C traceparent of the vendor's call (empty when it had none).
    traceparent: str
    occurred_time: datetime
    receive_time: datetime
    #: An alarm step's (and a handling log's) alarm id, the vendor's; empty for other kinds.
    alarm_id: str = field(default="", kw_only=True)
    #: Whether the alarm step closes its alarm (not stored: its due time says it).
    closes_alarm: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class Entry(NewEntry):
    """An entry as stored: the event as it came, its place in the queue and its state."""

    #: Its place in the patient's queue (1, 2, ...).
    sequence: int
    state: EntryState
    attempts: int
    next_attempt_time: datetime | None
    last_error_reason: str
    create_time: datetime
    update_time: datetime
    journaled_time: datetime | None
    note_identifier: str
    #: The alarm segment an alarm step was journaled in, or a handling log journals (None
    #: until the step's segment is cut, and for other kinds).
    alarm_segment: int | None = field(default=None, kw_only=True)

    @property
    def vendor_organization_number(self) -> str:
        """The organisation number in the vendor system's name (empty if it has none)."""
        return names.VENDOR_SYSTEM.id_of(self.vendor_system, "organization_number") or ""


@dataclass(frozen=True)
class Enqueued:
    """The answer for one enqueued item: whether it is new, and its state."""

    entry_id: str
    created: bool
    state: EntryState


@dataclass(frozen=True)
class Claim:
    """A patient queue a worker has leased: its head when due, whether another note waits behind
    it, and the due notes behind it that were read with it (as many as the claim asked for)."""

    municipality: str
    patient: str
    head: Entry | None
    more: bool
    behind: tuple[Entry, ...] = ()

    @property
    def notes(self) -> list[Entry]:
        """The due notes read with the claim, in queue order."""
        return [] if self.head is None else [self.head, *self.behind]


@dataclass(frozen=True)
class Change:
    """What an attempt made of an entry: JOURNALED (as `note`), RETRYING (at `at`, after
    `reason`) or DEAD (after `reason`)."""

    state: EntryState
    note: str = ""
    reason: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class Settled:
    """An entry's change written: whether its worker still held the queue (else nothing was
    written), and the queue's next due notes when the worker goes on with it (none: the queue
    was handed back, or is still held when it was asked to be)."""

    kept: bool
    notes: tuple[Entry, ...] = ()

    @property
    def head(self) -> Entry | None:
        return self.notes[0] if self.notes else None


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_page_token: str


def check_retryable(state: EntryState) -> None:
    """RetryEntry's rule: only a dead letter goes back in its queue."""
    if state not in RETRYABLE:
        raise FailedPrecondition(Reason.ENTRY_NOT_DEAD, "only a dead letter can be retried")
