"""Alarm handling logs: the steps of one alarm journaled together, as one note per segment.

An alarm is a vendor system's `alarm_id` for one patient in one municipality. Its steps arrive
as entries of kind ALARM_STEP, in any order and perhaps more than once (a repeated entry id is
stored once). The steps not yet journaled make the alarm's current *segment* (1, 2, ...). The
segment is cut — its steps numbered with it and its handling log queued as a note (kind
ALARM_LOG) at the tail of the patient's queue — when it falls due:

- a closing step (`closes_alarm`) has arrived and the settle window has passed since: steps
  arriving in the window (they may come out of order) join the log;
- or the alarm is still open when the timeout has passed since the segment's first step
  arrived: the log so far is journaled as a segment, and the steps after it make the next one.

Whichever comes first. After a cut nothing is due until the alarm's next step arrives, which
starts the next segment. The due time lives in the database, so a restart loses nothing.

The log entry's id is derived from the vendor system, the alarm id and the segment number, so a
repeated cut inserts nothing and the note's conditional creates never duplicate it.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: The kind of a handling log's entry: a note made of an alarm segment's steps.
ALARM_LOG = "alarm_log"
#: The uuid5 namespace of handling logs' entry ids: uuid5(NAMESPACE_URL, "urn:vkp:alarm-log").
ALARM_LOG_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:vkp:alarm-log")


@dataclass(frozen=True)
class AlarmWindows:
    """How long after a closing step an alarm's log waits for late steps (`settle`), and how
    long after its first step an open alarm's segment waits before it is journaled as it is
    (`timeout`)."""

    settle: timedelta
    timeout: timedelta


@dataclass(frozen=True, order=True)
class AlarmKey:
    """One alarm: a vendor system's alarm id for a patient in a municipality."""

    municipality: str
    patient: str
    vendor_system: str
    alarm_id: str


def step_due(windows: AlarmWindows, arrived: datetime, *, closes: bool) -> datetime:
    """When a segment whose first (or only) step arrived at `arrived` falls due, by that step
    alone: after the settle window when it closes the alarm, else after the timeout."""
    due = arrived + windows.timeout
    return min(due, arrived + windows.settle) if closes else due


def segment_due(current: datetime | None, step: datetime) -> datetime:
    """A segment's due time after one more step: `current` is its due time so far (None: the
    step starts the segment), `step` is the step's own (`step_due`). A step never puts a due
    time off: the earlier one holds."""
    return step if current is None or step < current else current


def batch_due(
    windows: AlarmWindows, arrived: datetime, closing: Iterable[bool]
) -> tuple[datetime, bool]:
    """The due time that steps of one alarm arriving together ask for, and whether one of them
    closes the alarm (folded into the stored due time with `segment_due`)."""
    closes = any(closing)
    return step_due(windows, arrived, closes=closes), closes


def log_entry_id(vendor_system: str, alarm_id: str, segment: int) -> str:
    """The entry id of an alarm segment's handling log (a UUID string): the same vendor system,
    alarm and segment give the same id, so a repeated cut stores nothing new."""
    return str(uuid.uuid5(ALARM_LOG_NAMESPACE, f"{vendor_system}\n{alarm_id}\n{segment}"))


def pack_steps(segment: int, steps: Sequence[bytes]) -> bytes:
    """A handling log's stored payload: the segment number and its steps (each a serialized
    event), length-prefixed."""
    parts = [struct.pack(">II", segment, len(steps))]
    for step in steps:
        parts.append(struct.pack(">I", len(step)))
        parts.append(step)
    return b"".join(parts)


def unpack_steps(payload: bytes) -> tuple[int, list[bytes]]:
    """The segment number and the steps of a payload `pack_steps` made; ValueError when it is
    not one."""
    try:
        segment, count = struct.unpack_from(">II", payload, 0)
        offset, steps = 8, []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", payload, offset)
            offset += 4
            if offset + size > len(payload):
                raise ValueError("a step runs past the payload's end")
            steps.append(payload[offset : offset + size])
            offset += size
    except struct.error as exc:
        raise ValueError("not a handling log's payload") from exc
    if offset != len(payload):
        raise ValueError("bytes after the last step")
    return segment, steps
