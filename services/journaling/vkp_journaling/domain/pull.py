"""Pull mode: an EPJ that fetches its municipality's notes (ListPending) and confirms or refuses
each (Acknowledge), instead of the hub pushing them.

Every note of a pull-mode municipality gets a *pull sequence*: a number from the municipality's
counter, handed out in one serialised step (under the municipality row's lock) when the EPJ asks,
never from a serial column whose commit order can differ from its numbering. Notes committed
after a step get higher numbers than any handed out in it, so a reader that pages by cursor (the
last pull sequence it saw) sees every note exactly once. A batch of notes is numbered in the
order they were taken, each patient's in queue order (`number_on`). A note read but not
acknowledged within the read timeout is offered again with a new number at the tail: the cursor
never goes back.

Acknowledge: JOURNALED ends a note's way as a pushed delivery does; REJECTED makes it a dead
letter with the EPJ's reason; a repeat answers the state the first gave (`acknowledge`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from vkp_journaling.domain.entry import WAITING, Entry, EntryState
from vkp_journaling.domain.reasons import Reason
from vkp_lib.errors import FailedPrecondition, NotFound, PermissionDenied, VkpError

#: Notes a ListPending page holds when the request names no size.
DEFAULT_PAGE_SIZE = 50
#: A pull note's states: offered (numbered) and not yet answered.
OFFERED = (*WAITING, EntryState.READ)
#: The media type of a pending note's bundle.
FHIR_BUNDLE_TYPE = "application/fhir+json; fhirVersion=4.0"
#: The dead letter's reason prefix of a note the EPJ refused.
EPJ_REFUSED = "EPJ_REFUSED"


class Outcome(enum.Enum):
    """What the EPJ did with a note."""

    JOURNALED = "journaled"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Acknowledgement:
    entry_id: str
    outcome: Outcome
    #: REJECTED: why, in the EPJ's words (no health data, by the contract).
    reason: str = ""


@dataclass(frozen=True)
class Offered:
    """What Acknowledge needs of a stored entry: whose it is, its state and its pull sequence
    (None: never offered)."""

    municipality: str
    state: EntryState
    pull_sequence: int | None


@dataclass(frozen=True)
class Unnumbered:
    """A note to number: its entry, its patient, its place in the patient's queue, and when it
    was taken (or last offered)."""

    entry_id: str
    patient: str
    sequence: int
    taken: datetime


@dataclass(frozen=True)
class PulledPage:
    """A page of notes for the EPJ, marked READ, and the cursor after it (the last pull sequence
    it reached)."""

    entries: list[Entry]
    cursor: int


@dataclass(frozen=True)
class PendingNote:
    """A note as an EPJ that pulls fetches it: its entry and its FHIR Bundle, as JSON."""

    entry: Entry
    bundle: bytes


@dataclass(frozen=True)
class PendingPage:
    notes: list[PendingNote]
    next_page_token: str


def check_caller(caller_organization_number: str, municipality: str) -> None:
    """An EPJ pulls its own municipality's notes only."""
    if caller_organization_number != municipality:
        raise PermissionDenied(
            Reason.WRONG_MUNICIPALITY, "an EPJ may fetch and acknowledge its own notes only"
        )


def check_pull_mode(pulls: bool) -> None:
    """ListPending and Acknowledge serve municipalities whose endpoint is PULL only."""
    if not pulls:
        raise FailedPrecondition(
            Reason.NOT_PULL_MODE, "the municipality's EPJ endpoint is not in pull mode"
        )


def number_on(last: int, notes: Sequence[Unnumbered]) -> list[tuple[str, int]]:
    """Numbers the notes on from `last`: in the order they were taken (by patient, then queue
    place, on a tie), and each patient's in queue order even when their clocks disagreed (a
    patient's notes take the numbers their places got, sorted). (entry id, pull sequence)."""
    ordered = sorted(notes, key=lambda n: (n.taken, n.patient, n.sequence))
    slots: dict[str, list[int]] = {}
    for number, note in enumerate(ordered, start=last + 1):
        slots.setdefault(note.patient, []).append(number)
    by_patient: dict[str, list[Unnumbered]] = {}
    for note in ordered:
        by_patient.setdefault(note.patient, []).append(note)
    numbered: list[tuple[str, int]] = []
    for patient, theirs in by_patient.items():
        in_queue_order = sorted(theirs, key=lambda n: n.sequence)
        numbered.extend(
            (note.entry_id, number)
            for note, number in zip(in_queue_order, slots[patient], strict=True)
        )
    return sorted(numbered, key=lambda pair: pair[1])


def check_cursor(position: int, last: int) -> int:
    """A cursor is a number handed out (or 0): one beyond the counter was not ours (ValueError,
    which the page token's parsing reports as INVALID_PAGE_TOKEN)."""
    if not 0 <= position <= last:
        raise ValueError("cursor beyond the pull sequence")
    return position


def refused(reason: str) -> str:
    """A refused note's dead-letter reason: EPJ_REFUSED, with the EPJ's words after a colon."""
    words = " ".join(reason.split())
    return f"{EPJ_REFUSED}: {words}" if words else EPJ_REFUSED


@dataclass(frozen=True)
class Apply:
    """The acknowledgement changes the entry to `state`."""

    state: EntryState


@dataclass(frozen=True)
class Keep:
    """A repeat: the entry stays as it is, in `state`."""

    state: EntryState


def acknowledge(
    found: Offered | None, municipality: str, outcome: Outcome
) -> Apply | Keep | VkpError:
    """What an acknowledgement does to an entry (as found under its lock): an unknown entry, or
    another municipality's, is not found (never revealed); a note that ended its way answers its
    state when the acknowledgement repeats what ended it, else it is final already; a note never
    offered cannot be acknowledged; an offered note becomes JOURNALED, or DEAD when refused."""
    if found is None or found.municipality != municipality:
        return NotFound(Reason.ENTRY_NOT_FOUND, "no such entry")
    wanted = EntryState.JOURNALED if outcome is Outcome.JOURNALED else EntryState.DEAD
    if found.state not in OFFERED:
        if found.state is wanted:
            return Keep(found.state)
        return FailedPrecondition(
            Reason.ENTRY_ALREADY_FINAL, "the entry was acknowledged otherwise, or ended before"
        )
    if found.pull_sequence is None:
        return FailedPrecondition(Reason.ENTRY_NOT_READ, "the entry was never offered")
    return Apply(wanted)
