"""The registry's resources, as the domain sees them, and what the use cases pass around: a
change, a decision, a create's request key, a page of a list.

Resource names come from `vkp_lib.names`, each pattern written once for the whole hub.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Generic, Protocol, TypeVar

from vkp_lib import names


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


@dataclass(frozen=True)
class Municipality:
    organization_number: str
    municipality_number: str
    display_name: str
    state: MunicipalityState = MunicipalityState.ACTIVE
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @cached_property
    def name(self) -> str:
        return names.MUNICIPALITY.format(organization_number=self.organization_number)


@dataclass(frozen=True)
class Vendor:
    organization_number: str
    display_name: str
    create_time: datetime | None = None
    revision: int = 0

    @cached_property
    def name(self) -> str:
        return names.VENDOR.format(organization_number=self.organization_number)


@dataclass(frozen=True)
class VendorSystem:
    vendor_organization_number: str
    system_id: str
    display_name: str
    client_ids: tuple[str, ...]
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0

    @cached_property
    def name(self) -> str:
        return names.VENDOR_SYSTEM.format(
            organization_number=self.vendor_organization_number, system_id=self.system_id
        )

    @property
    def vendor(self) -> str:
        """The name of the vendor it belongs to."""
        return names.VENDOR.format(organization_number=self.vendor_organization_number)


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

    @cached_property
    def name(self) -> str:
        return names.EPJ_ENDPOINT.format(organization_number=self.municipality)


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

    @cached_property
    def name(self) -> str:
        return names.AGREEMENT.format(
            organization_number=self.municipality, agreement_id=self.agreement_id
        )

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

    @cached_property
    def name(self) -> str:
        return names.PARTNER_PROFILE.format(organization_number=self.municipality)

    def patterns(self, service_code: ServiceCode) -> tuple[str, ...]:
        return next((p for code, p in self.mappings if code is service_code), ())


Resource = Municipality | Vendor | VendorSystem | EpjEndpoint | Agreement | PartnerProfile


class Named(Protocol):
    """What every resource has: its name and the revision of its last change."""

    @property
    def name(self) -> str: ...

    @property
    def revision(self) -> int: ...


#: One kind of resource, where code works the same for each.
R = TypeVar("R", bound=Named)


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


@dataclass(frozen=True)
class RequestKey:
    """A create that carries a `request_id` (AIP-155): a retry with the same id and the same
    content gets the first answer; the id with other content is refused."""

    request_id: str
    method: str  # the RPC, e.g. "CreateVendor"
    fingerprint: str  # a hash of the request's content


T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list: its size (0: the default), the previous page's token, and the
    list's filters as its tokens carry them (a token is refused for other filters)."""

    size: int = 0
    token: str = ""
    filters: str = ""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
