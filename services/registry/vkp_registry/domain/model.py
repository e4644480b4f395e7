"""The registry's resources, as the domain sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class ServiceCode(enum.StrEnum):
    RT = "RT"
    TA = "TA"
    GPS = "GPS"
    MD = "MD"
    DT = "DT"
    DHO = "DHO"


class Action(enum.StrEnum):
    JOURNAL = "journal"
    LOOKUP = "lookup"


class MunicipalityState(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AgreementState(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class Adapter(enum.StrEnum):
    FHIR = "fhir"


class DeliveryMode(enum.StrEnum):
    PUSH = "push"
    PULL = "pull"


class ChangeType(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class DenialReason(enum.StrEnum):
    NOT_ACTIVE = "NOT_ACTIVE"
    NOT_ALLOWED = "NOT_ALLOWED"
    NO_ACCESS = "NO_ACCESS"
    UNKNOWN_ORGANIZATION = "UNKNOWN_ORGANIZATION"


def municipality_name(organization_number: str) -> str:
    return f"municipalities/{organization_number}"


def vendor_name(organization_number: str) -> str:
    return f"vendors/{organization_number}"


@dataclass(frozen=True)
class Municipality:
    organization_number: str
    municipality_number: str
    display_name: str
    state: MunicipalityState = MunicipalityState.ACTIVE
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return municipality_name(self.organization_number)


@dataclass(frozen=True)
class Vendor:
    organization_number: str
    display_name: str
    create_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return vendor_name(self.organization_number)


@dataclass(frozen=True)
class VendorSystem:
    vendor_organization_number: str
    system_id: str
    display_name: str
    client_ids: tuple[str, ...]
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return f"{vendor_name(self.vendor_organization_number)}/systems/{self.system_id}"


@dataclass(frozen=True)
class EpjEndpoint:
    municipality: str  # organisation number
    adapter: Adapter
    base_url: str
    delivery_mode: DeliveryMode
    credentials_secret: str = ""
    request_timeout_seconds: float | None = None
    connect_timeout_seconds: float | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return f"{municipality_name(self.municipality)}/epjEndpoint"


@dataclass(frozen=True)
class Agreement:
    municipality: str  # organisation number
    agreement_id: str
    vendor_system: str  # vendors/{org}/systems/{id}
    service_codes: tuple[ServiceCode, ...]
    actions: tuple[Action, ...]
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    state: AgreementState = AgreementState.ACTIVE
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return f"{municipality_name(self.municipality)}/agreements/{self.agreement_id}"

    def covers(self, service_code: ServiceCode, action: Action) -> bool:
        return service_code in self.service_codes and action in self.actions

    def in_force(self, now: datetime) -> bool:
        return (
            self.state is AgreementState.ACTIVE
            and (self.valid_from is None or self.valid_from <= now)
            and (self.valid_until is None or now < self.valid_until)
        )


@dataclass(frozen=True)
class PartnerProfile:
    municipality: str  # organisation number
    #: Service code → glob patterns over the EPJ's EpisodeOfCare.type codes.
    mappings: tuple[tuple[ServiceCode, tuple[str, ...]], ...] = ()
    update_time: datetime | None = None
    revision: int = 0

    @property
    def name(self) -> str:
        return f"{municipality_name(self.municipality)}/partnerProfile"

    def patterns(self, service_code: ServiceCode) -> tuple[str, ...]:
        return next((p for code, p in self.mappings if code is service_code), ())


Resource = Municipality | Vendor | VendorSystem | EpjEndpoint | Agreement | PartnerProfile


@dataclass(frozen=True)
class Change:
    """One committed change: its revision is unique and in commit order."""

    revision: int
    commit_time: datetime
    type: ChangeType
    resource_name: str
    resource: Resource | None  # None when deleted


@dataclass(frozen=True)
class Decision:
    """May a client act for a municipality, service and action — and why (not)."""

    allowed: bool
    denial_reason: DenialReason | None = None
    agreement: str = ""
    vendor_system: str = ""
    vendor_organization_number: str = ""
    municipality_number: str = ""
    service_type_patterns: tuple[str, ...] = field(default_factory=tuple)
    revision: int = 0
