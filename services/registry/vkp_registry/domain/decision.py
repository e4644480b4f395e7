"""The access decision, from an in-memory snapshot of the registry kept current by its changes.

Allowed when the municipality is known and active, the client id belongs to a vendor system,
and an agreement between them covers the service code and the action and is in force now. The
denials, in the order they are checked, modelled on VKP's error codes:

- UNKNOWN_ORGANIZATION: the municipality or the client id is not known;
- NOT_ACTIVE: the municipality is suspended;
- NO_ACCESS: no agreement between the municipality and the vendor system;
- NOT_ALLOWED: agreements exist, but none covers this service code and action;
- NOT_ACTIVE: the agreements that cover it are revoked, suspended or outside their validity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from vkp_lib import names
from vkp_registry.domain.model import (
    Action,
    Agreement,
    Change,
    Decision,
    DenialReason,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    PartnerProfile,
    Resource,
    ServiceCode,
    Vendor,
    VendorSystem,
)


@dataclass
class AccessSnapshot:
    """What the access decision needs, as of `revision`."""

    revision: int = 0
    municipalities: dict[str, Municipality] = field(default_factory=dict)
    systems: dict[str, VendorSystem] = field(default_factory=dict)  # by name
    system_of_client: dict[str, str] = field(default_factory=dict)  # client id → system name
    agreements: dict[str, Agreement] = field(default_factory=dict)  # by name
    profiles: dict[str, PartnerProfile] = field(default_factory=dict)  # by municipality

    def apply(self, change: Change) -> None:
        """Brings the snapshot to `change.revision`; changes must come in revision order."""
        if change.resource is not None:
            self.put(change.resource)
        else:
            self.remove(change.resource_name)
        self.revision = max(self.revision, change.revision)

    def put(self, resource: Resource) -> None:
        if isinstance(resource, Municipality):
            self.municipalities[resource.organization_number] = resource
        elif isinstance(resource, VendorSystem):
            self._drop_system(resource.name)
            self.systems[resource.name] = resource
            for client_id in resource.client_ids:
                self.system_of_client[client_id] = resource.name
        elif isinstance(resource, Agreement):
            self.agreements[resource.name] = resource
        elif isinstance(resource, PartnerProfile):
            self.profiles[resource.municipality] = resource
        elif not isinstance(resource, Vendor | EpjEndpoint):
            raise TypeError(f"unknown resource {type(resource).__name__}")

    def remove(self, name: str) -> None:
        """A deleted resource: an agreement or a vendor system (the others are not deleted, or,
        like an EPJ endpoint, not in the snapshot)."""
        if names.AGREEMENT.parse(name) is not None:
            self.agreements.pop(name, None)
        elif names.VENDOR_SYSTEM.parse(name) is not None:
            self._drop_system(name)

    def _drop_system(self, name: str) -> None:
        old = self.systems.pop(name, None)
        for client_id in old.client_ids if old else ():
            if self.system_of_client.get(client_id) == name:
                del self.system_of_client[client_id]

    def decide(
        self,
        client_id: str,
        municipality: str,
        service_code: ServiceCode,
        action: Action,
        now: datetime,
    ) -> Decision:
        place = self.municipalities.get(municipality)
        system_name = self.system_of_client.get(client_id)
        system = self.systems.get(system_name) if system_name else None
        if system is None:
            return Decision(False, DenialReason.UNKNOWN_ORGANIZATION, revision=self.revision)
        denied = Decision(
            False,
            vendor_system=system.name,
            vendor_organization_number=system.vendor_organization_number,
            revision=self.revision,
        )
        if place is None:  # a known system: the municipality is what is unknown
            return replace(denied, denial_reason=DenialReason.UNKNOWN_ORGANIZATION)
        denied = replace(denied, municipality_number=place.municipality_number)
        if place.state is not MunicipalityState.ACTIVE:
            return replace(denied, denial_reason=DenialReason.NOT_ACTIVE)
        between = sorted(
            (
                a
                for a in self.agreements.values()
                if a.municipality == municipality and a.vendor_system == system.name
            ),
            key=lambda a: a.name,
        )
        if not between:
            return replace(denied, denial_reason=DenialReason.NO_ACCESS)
        covering = [a for a in between if a.covers(service_code, action)]
        if not covering:
            return replace(
                denied, denial_reason=DenialReason.NOT_ALLOWED, agreement=between[0].name
            )
        in_force = next((a for a in covering if a.in_force(now)), None)
        if in_force is None:
            return replace(
                denied, denial_reason=DenialReason.NOT_ACTIVE, agreement=covering[0].name
            )
        profile = self.profiles.get(municipality)
        return replace(
            denied,
            allowed=True,
            agreement=in_force.name,
            service_type_patterns=profile.patterns(service_code) if profile else (),
        )
