"""An alarm as ingest sees it: the steps of one alarm (`alarm_id`, per vendor system) open it,
the step flagged `closes_alarm` closes it, and CheckOpenAlarm answers from what they left.

Steps arrive out of order and more than once, so the state is what every step's time says, not
their order of arrival: opened at the earliest step's time, last stepped at the latest's, closed
at the earliest closing step's (a step arriving after the closing one, whatever its time, leaves
the alarm closed). Each rule is a minimum or a maximum, so a step taken twice changes nothing.

The alarm belongs to the patient (and municipality) of the first step the hub registered: a
step of the same alarm id naming another patient is registered and journaled as any event, but
changes nothing of the alarm, and CheckOpenAlarm never shows one patient's alarm to a question
about another.

The store keeps the same rule in SQL (an upsert per step, `store.py`); `with_step` is its
statement of record, and a test holds the two to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class AlarmStep:
    """The facts of one alarm step the alarm's state is made from."""

    vendor_system: str
    alarm_id: str
    municipality: str
    #: The patient's national id (its 11 digits).
    patient: str
    alert_code: str
    occurred_time: datetime
    closes: bool


@dataclass(frozen=True)
class Alarm:
    """One alarm of a vendor system: whose it is (its first step's patient), what kind, and the
    times its steps give it."""

    municipality: str
    patient: str
    alert_code: str
    opened_time: datetime
    last_step_time: datetime
    #: None while no closing step has arrived.
    closed_time: datetime | None

    @property
    def open(self) -> bool:
        return self.closed_time is None

    def belongs_to(self, municipality: str, patient: str) -> bool:
        return (self.municipality, self.patient) == (municipality, patient)


def with_step(alarm: Alarm | None, step: AlarmStep) -> Alarm:
    """The alarm after one more of its steps (`alarm` None: its first)."""
    at = step.occurred_time
    if alarm is None:
        return Alarm(
            municipality=step.municipality,
            patient=step.patient,
            alert_code=step.alert_code,
            opened_time=at,
            last_step_time=at,
            closed_time=at if step.closes else None,
        )
    if not alarm.belongs_to(step.municipality, step.patient):
        return alarm  # another patient's step under this alarm id: not this alarm's
    closed = alarm.closed_time
    if step.closes:
        closed = at if closed is None else min(closed, at)
    return replace(
        alarm,
        opened_time=min(alarm.opened_time, at),
        last_step_time=max(alarm.last_step_time, at),
        closed_time=closed,
    )


def seen_by(alarm: Alarm | None, municipality: str, patient: str) -> Alarm | None:
    """The alarm as a question about this patient of this municipality may see it: not at all
    when it is another's (or unknown)."""
    return alarm if alarm is not None and alarm.belongs_to(municipality, patient) else None
