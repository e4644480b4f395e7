"""When a responder's system may see a patient (DESIGN.md §4, VKP's *tjenstlig behov*).

- The service need: the patient has an active `EpisodeOfCare` today whose type is one the
  municipality's partner profile maps to the vendor's service code (glob patterns such as `27` or
  `2.2.*`, from the registry's access decision).
- The alarm window: responder data (`GetAlarmContext`) only while that vendor's alarm for that
  patient is open, and for a grace period after it closed.

Pure: no gRPC, no EPJ, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Episode:
    """An EpisodeOfCare of the patient, as the EPJ has it."""

    episode_id: str
    type_code: str
    status: str  # FHIR EpisodeOfCare.status: planned, waitlist, active, onhold, finished, ...
    start: date | None
    end: date | None
    #: The type's code system and display, and the unit that delivers it, as the EPJ says.
    type_system: str = ""
    type_display: str = ""
    managing_organization: str = ""

    def active_on(self, day: date) -> bool:
        return (
            self.status == "active"
            and (self.start is None or self.start <= day)
            and (self.end is None or day <= self.end)
        )


def service_need(episodes: Iterable[Episode], patterns: Sequence[str], day: date) -> Episode | None:
    """The episode that gives the service need on `day` (the first by id), or None."""
    matching = [
        e
        for e in episodes
        if e.active_on(day) and any(fnmatchcase(e.type_code, p) for p in patterns)
    ]
    return min(matching, key=lambda e: e.episode_id) if matching else None


@dataclass(frozen=True)
class AlarmState:
    """What ingest says of one vendor's alarm for one patient."""

    open: bool
    close_time: datetime | None = None


def alarm_window_open(alarm: AlarmState | None, now: datetime, grace: timedelta) -> bool:
    """Whether responder data may be given: the alarm is open, or closed less than `grace` ago."""
    if alarm is None:
        return False
    if alarm.open:
        return True
    return alarm.close_time is not None and now - alarm.close_time <= grace
