"""What every part of a note shares: the event's context, the identifiers of the note's
resources, and the error of an event that makes no note."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

#: The identifier system of the hub's journal-note resources; values are `<entry id>/<n>`.
NOTE_IDENTIFIER_SYSTEM = "urn:vkp:journal-note"
#: The uuid5 namespace of the entries' fullUrls: uuid5(NAMESPACE_URL, NOTE_IDENTIFIER_SYSTEM).
NOTE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NOTE_IDENTIFIER_SYSTEM)
#: The identifier system of a vendor's devices: this prefix plus the vendor's organisation number.
DEVICE_IDENTIFIER_SYSTEM_PREFIX = "urn:vkp:device:"
#: Enhetsregisteret's organisation numbers.
ORGANIZATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"


class NotRenderable(ValueError):
    """The event makes no note here: an alarm step (alarm handling logs are rendered
    elsewhere), or a patient id without a national identifier system. The message never
    repeats health data."""


@dataclass(frozen=True)
class NoteContext:
    """What the hub knows about an event besides the event itself."""

    #: The hub's id of the event (a UUID string): the note's idempotency key.
    entry_id: str
    #: The vendor's organisation number, e.g. "912340007".
    vendor_organization_number: str
    #: The vendor's name, e.g. "Dosetta AS"; empty when unknown (the number stands in).
    vendor_name: str
    #: The vendor system the event came through, "vendors/912340007/systems/dispenser-cloud".
    vendor_system: str


def note_key(entry_id: str, n: int) -> str:
    """The identifier value of the n-th resource (1, 2, ...) of an entry's note."""
    return f"{entry_id}/{n}"


def full_url(context: NoteContext, n: int) -> str:
    return f"urn:uuid:{uuid.uuid5(NOTE_NAMESPACE, note_key(context.entry_id, n))}"
