"""An access record, as the audit service keeps it; where it is in its chain; what finds it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from vkp_lib.national_id import NationalIdKind


class AuditAction(enum.StrEnum):
    READ = "read"  # one patient's data (BALP PatientRead)
    QUERY = "query"  # a search or list of patients (BALP Query)
    CREATE = "create"  # data written about patients (BALP Create)


class AuditOutcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


@dataclass(frozen=True)
class Patient:
    national_id: str
    type: NationalIdKind | None = None  # the kind the writer stated, if any


@dataclass(frozen=True)
class Actor:
    client_id: str
    organization_number: str = ""
    vendor_system: str = ""
    person_id: str = ""


@dataclass(frozen=True)
class AuditRecord:
    """One access. `sequence`, `previous_hash`, `hash` and `record_time` are the chain's: set when
    the record is appended to its municipality's chain."""

    record_id: str
    actor: Actor
    municipality: str  # organisation number: the chain the record joins
    patients: tuple[Patient, ...]
    action: AuditAction
    resource: str
    outcome: AuditOutcome
    occurred_time: datetime
    service_code: str = ""  # RT TA GPS MD DT DHO, or empty
    alarm_id: str = ""
    outcome_reason: str = ""
    stale_data: bool = False
    request_id: str = ""
    trace_id: str = ""
    access_basis: str = ""  # the rule that allowed it and what it rested on
    sequence: int = 0
    previous_hash: str = ""
    hash: str = ""
    record_time: datetime | None = None


@dataclass(frozen=True)
class Checkpoint:
    """A chain head, signed with a key kept outside the database."""

    municipality: str
    sequence: int
    head_hash: str
    sign_time: datetime
    key_id: str
    signature: bytes


@dataclass(frozen=True)
class Appended:
    """Where a record is in its chain; `created` is False when it was there already."""

    record_id: str
    sequence: int
    created: bool


@dataclass(frozen=True)
class RecordQuery:
    """Which records of a municipality's log to find: by patient, by actor, by time (from
    `since`, before `until`), a page at a time (newest first)."""

    municipality: str
    national_id: str = ""
    client_id: str = ""
    since: datetime | None = None
    until: datetime | None = None
    page_size: int = 0  # 0: the default
    page_token: str = ""


@dataclass(frozen=True)
class Page:
    records: list[AuditRecord]
    next_page_token: str


@dataclass(frozen=True)
class FhirExport:
    """A page of records as a FHIR R4 Bundle of AuditEvents (JSON, UTF-8)."""

    bundle: bytes
    next_page_token: str
