"""Ingest's types: an event on its way in (`Incoming`, an alarm step's with its facts, grouped by
request in a `Registration`), as registered (`Registered`, `StoredEvent`) and on its way out to
journaling (`Outgoing`); and the content hash that tells a repeat from a reused event id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from vkp_ingest.domain.alarm import AlarmStep


def content_hash(serialized: bytes) -> str:
    """The canonical hash of an event's content: of its deterministic serialization."""
    return hashlib.sha256(serialized).hexdigest()


@dataclass(frozen=True)
class Incoming:
    """An accepted event, to be registered: the event itself as its deterministic bytes."""

    vendor_system: str
    event_id: str
    client_id: str
    content_hash: str
    municipality: str
    event: bytes
    #: The W3C trace context of the call that brought it, carried on to journaling.
    traceparent: str
    #: An alarm step's facts, kept in the alarm's state when the event is new; None for every
    #: other payload.
    alarm: AlarmStep | None = None


@dataclass(frozen=True)
class Registration:
    """One request's accepted events, registered together, and the audit record (serialized) of
    each municipality they are for: stored only when the request registered a new event there."""

    events: Sequence[Incoming]
    audits: Mapping[str, bytes]


@dataclass(frozen=True)
class Registered:
    """An event as stored: `replayed` when it was there before with the same content, `reused`
    when its id was there with other content (nothing stored)."""

    id: str
    event_id: str
    receive_time: datetime
    replayed: bool = False
    reused: bool = False

    @property
    def new(self) -> bool:
        return not (self.replayed or self.reused)


@dataclass(frozen=True)
class StoredEvent:
    """A registered event as its vendor asks about it: whether it was handed to journaling."""

    id: str
    sent: bool
    receive_time: datetime


@dataclass(frozen=True)
class Outgoing:
    """A registered event not yet handed to journaling, in position order."""

    id: str
    vendor_system: str
    client_id: str
    event: bytes
    traceparent: str
    receive_time: datetime
    position: int
    municipality: str
