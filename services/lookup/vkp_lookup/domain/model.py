"""What lookup answers with: the EPJ's data as a responder sees it, how fresh it is, and the
rule that released it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from vkp_lookup.domain.need import Episode

T = TypeVar("T")


@dataclass(frozen=True)
class Freshness:
    """Every answer says how old its data is, and whether it was served stale (EPJ down)."""

    fetch_time: datetime
    stale: bool = False

    def age(self, now: datetime) -> timedelta:
        return max(timedelta(0), now - self.fetch_time)

    @staticmethod
    def of(parts: list[Freshness]) -> Freshness:
        """An answer made of several reads: as old as its oldest part, stale if any part is."""
        return Freshness(
            fetch_time=min(p.fetch_time for p in parts), stale=any(p.stale for p in parts)
        )


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str = ""


@dataclass(frozen=True)
class Name:
    given: tuple[str, ...] = ()
    family: str = ""
    text: str = ""


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...] = ()
    postal_code: str = ""
    city: str = ""
    access_hint: str = ""


@dataclass(frozen=True, repr=False)
class Patient:
    """A Patient of the EPJ. `id` is the EPJ's logical id; never log the rest."""

    id: str
    national_id: str
    national_id_system: str
    name: Name = field(default_factory=Name)
    phones: tuple[str, ...] = ()
    address: Address = field(default_factory=Address)
    door_lock_system: str = ""
    zone: str = ""
    household: str = ""
    #: The logical id of the GP's Practitioner, when the EPJ names one.
    general_practitioner_id: str = ""

    def __repr__(self) -> str:
        return f"Patient(id={self.id!r})"


@dataclass(frozen=True, repr=False)
class NextOfKin:
    name: Name
    relationship: str
    phones: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "NextOfKin(...)"


@dataclass(frozen=True, repr=False)
class GeneralPractitioner:
    name: Name
    organization: str = ""
    phones: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "GeneralPractitioner(...)"


class CriticalKind(enum.Enum):
    ALLERGY = "allergy"
    WARNING = "warning"


@dataclass(frozen=True)
class CriticalInformation:
    kind: CriticalKind
    text: str
    code: Coding | None = None
    criticality: str = ""


@dataclass(frozen=True)
class Visit:
    start: datetime | None
    end: datetime | None
    activity: str
    performer: str = ""


@dataclass(frozen=True)
class AlarmContext:
    """Everything a responder needs."""

    patient: Patient
    next_of_kin: tuple[NextOfKin, ...]
    general_practitioner: GeneralPractitioner | None
    critical_information: tuple[CriticalInformation, ...]
    visits: tuple[Visit, ...]
    services: tuple[Episode, ...]


@dataclass(frozen=True)
class ServiceRecipient:
    patient: Patient
    services: tuple[Episode, ...]


class Rule(enum.Enum):
    """The rule that released an answer."""

    SERVICE_NEED = "SERVICE_NEED"
    OPEN_ALARM = "OPEN_ALARM"
    ALARM_GRACE = "ALARM_GRACE"


@dataclass(frozen=True)
class Basis:
    """Why the vendor may see an answer: the rule, the EPJ service that gave the service need
    and the agreement."""

    rule: Rule
    episode: Episode
    agreement: str

    @property
    def audit_text(self) -> str:
        """What the audit record's access basis says allowed it: the rule and the
        EpisodeOfCare."""
        return f"{self.rule.value} EpisodeOfCare/{self.episode.episode_id}"[:200]


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T
    freshness: Freshness
    basis: Basis


@dataclass(frozen=True)
class Page:
    recipients: tuple[ServiceRecipient, ...]
    next_page_token: str
    freshness: Freshness
