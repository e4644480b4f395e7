"""The registry's use cases: each RPC's checks in order, the store's writes with the checks they
make in their transaction, and the answers from this replica's snapshot.

A write answers only once this replica's snapshot has it (the feed is nudged at once), so the
next decision asked here reflects it. Reads of the resources go to the store; decisions, the
state of an endpoint's municipality and the client-id filter of a list come from the snapshot.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from vkp_lib import names
from vkp_registry.domain import rules
from vkp_registry.domain.model import (
    Action,
    Agreement,
    AgreementState,
    Change,
    Decision,
    EpjEndpoint,
    Municipality,
    MunicipalityState,
    Named,
    Page,
    PageRequest,
    PartnerProfile,
    R,
    RequestKey,
    ServiceCode,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.updates import (
    AgreementUpdate,
    EpjEndpointUpdate,
    MunicipalityUpdate,
    VendorSystemUpdate,
)
from vkp_registry.feed import ChangeLog, Feed

#: How long a write waits for this replica's snapshot to have it.
APPLIED_WITHIN_SECONDS = 5.0


class Reads(Protocol):
    """What a write's check may read, inside the write's transaction."""

    async def find(self, kind: type[R], name: str) -> R | None: ...

    async def client_ids_taken(
        self, client_ids: Sequence[str], *, by_other_than: str
    ) -> list[str]: ...

    async def municipality_number_taken(self, number: str) -> bool: ...


class Check(Protocol):
    async def __call__(self, reads: Reads, /) -> None: ...


class Store(ChangeLog, Protocol):
    """The storage the use cases need (`vkp_registry.store.RegistryStore`)."""

    async def find(self, kind: type[R], name: str) -> R | None: ...

    async def create(
        self, resource: R, *, request: RequestKey | None = None, check: Check | None = None
    ) -> R: ...

    async def update(
        self,
        kind: type[R],
        name: str,
        change: Callable[[R], R],
        check: Check | None = None,
        *,
        upsert: R | None = None,
    ) -> R: ...

    async def delete(self, kind: type[Named], name: str) -> int: ...

    async def list_municipalities(
        self, page: PageRequest, *, state: MunicipalityState | None = None
    ) -> Page[Municipality]: ...

    async def list_vendors(self, page: PageRequest) -> Page[Vendor]: ...

    async def list_vendor_systems(
        self, page: PageRequest, *, vendor: str | None = None, name: str | None = None
    ) -> Page[VendorSystem]: ...

    async def list_agreements(
        self,
        page: PageRequest,
        *,
        municipality: str | None = None,
        vendor_system: str | None = None,
        state: AgreementState | None = None,
    ) -> Page[Agreement]: ...


def _requires(kind: type[Named], name: str) -> Check:
    """A check that `name` exists."""

    async def check(reads: Reads) -> None:
        if await reads.find(kind, name) is None:
            raise rules.not_found(kind, name)

    return check


def _all(*checks: Check) -> Check:
    async def check(reads: Reads) -> None:
        for each in checks:
            await each(reads)

    return check


def _client_ids_free(system: str, client_ids: Sequence[str]) -> Check:
    async def check(reads: Reads) -> None:
        rules.check_client_ids_free(await reads.client_ids_taken(client_ids, by_other_than=system))

    return check


class RegistryService:
    def __init__(
        self,
        store: Store,
        feed: Feed,
        *,
        heartbeat_seconds: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.feed = feed
        self._heartbeat = heartbeat_seconds
        self._clock = clock

    async def _applied(self, revision: int) -> None:
        """Waits until this replica's snapshot has the write: its next decision reflects it."""
        self.feed.nudge()
        await self.feed.wait_beyond(revision - 1, seconds=APPLIED_WITHIN_SECONDS)

    async def _get(self, kind: type[R], name: str) -> R:
        found = await self.store.find(kind, name)
        if found is None:
            raise rules.not_found(kind, name)
        return found

    async def _create(self, resource: R, request: RequestKey | None, check: Check | None) -> R:
        created = await self.store.create(resource, request=request, check=check)
        await self._applied(created.revision)
        return created

    async def _update(
        self, kind: type[R], name: str, change: Callable[[R], R], check: Check | None = None
    ) -> R:
        updated = await self.store.update(kind, name, change, check)
        await self._applied(updated.revision)
        return updated

    async def _delete(self, kind: type[Named], name: str) -> int:
        revision = await self.store.delete(kind, name)
        await self._applied(revision)
        return revision

    # -- municipalities ----------------------------------------------------------------------

    async def create_municipality(
        self, municipality: Municipality, request: RequestKey | None = None
    ) -> Municipality:
        rules.check_organization_number(
            municipality.organization_number, "municipality.organization_number"
        )
        rules.check_municipality_number(
            municipality.municipality_number, "municipality.municipality_number"
        )

        async def number_free(reads: Reads) -> None:
            number = municipality.municipality_number
            rules.check_municipality_number_free(await reads.municipality_number_taken(number))

        return await self._create(municipality, request, number_free)

    async def get_municipality(self, name: str) -> Municipality:
        return await self._get(Municipality, name)

    async def list_municipalities(
        self, page: PageRequest, *, state: MunicipalityState | None = None
    ) -> Page[Municipality]:
        return await self.store.list_municipalities(page, state=state)

    async def update_municipality(self, name: str, update: MunicipalityUpdate) -> Municipality:
        update.check()
        return await self._update(Municipality, name, update.apply)

    # -- vendors and their systems -----------------------------------------------------------

    async def create_vendor(self, vendor: Vendor, request: RequestKey | None = None) -> Vendor:
        rules.check_organization_number(vendor.organization_number, "vendor.organization_number")
        return await self._create(vendor, request, None)

    async def get_vendor(self, name: str) -> Vendor:
        return await self._get(Vendor, name)

    async def list_vendors(self, page: PageRequest) -> Page[Vendor]:
        return await self.store.list_vendors(page)

    async def create_vendor_system(
        self, system: VendorSystem, request: RequestKey | None = None
    ) -> VendorSystem:
        check = _all(
            _requires(Vendor, system.vendor),
            _client_ids_free(system.name, system.client_ids),
        )
        return await self._create(system, request, check)

    async def get_vendor_system(self, name: str) -> VendorSystem:
        return await self._get(VendorSystem, name)

    async def list_vendor_systems(
        self, page: PageRequest, *, vendor: str | None = None, client_id: str = ""
    ) -> Page[VendorSystem]:
        """The systems of a vendor (by organisation number; every vendor's without one), or the
        one a client id belongs to."""
        system = self.feed.snapshot.system_of_client.get(client_id, "") if client_id else None
        return await self.store.list_vendor_systems(page, vendor=vendor, name=system)

    async def update_vendor_system(self, name: str, update: VendorSystemUpdate) -> VendorSystem:
        """The client ids the update names must be free, whether the mask names them or not."""
        update.check()
        clients_free = _client_ids_free(name, update.client_ids)
        return await self._update(VendorSystem, name, update.apply, clients_free)

    # -- EPJ endpoints -----------------------------------------------------------------------

    async def create_epj_endpoint(
        self, endpoint: EpjEndpoint, request: RequestKey | None = None
    ) -> EpjEndpoint:
        municipality = names.MUNICIPALITY.format(organization_number=endpoint.municipality)
        return await self._create(endpoint, request, _requires(Municipality, municipality))

    async def get_epj_endpoint(self, name: str) -> tuple[EpjEndpoint, MunicipalityState | None]:
        """The endpoint, and the state of its municipality (None when this replica does not know
        it yet)."""
        endpoint = await self._get(EpjEndpoint, name)
        place = self.feed.snapshot.municipalities.get(endpoint.municipality)
        return endpoint, place.state if place else None

    async def update_epj_endpoint(self, name: str, update: EpjEndpointUpdate) -> EpjEndpoint:
        update.check()
        return await self._update(EpjEndpoint, name, update.apply)

    async def delete_epj_endpoint(self, name: str) -> int:
        return await self._delete(EpjEndpoint, name)

    # -- agreements --------------------------------------------------------------------------

    async def create_agreement(
        self, agreement: Agreement, request: RequestKey | None = None
    ) -> Agreement:
        """An agreement without an id is named after its vendor system."""
        if not agreement.agreement_id:
            agreement_id = rules.default_agreement_id(agreement.vendor_system)
            agreement = replace(agreement, agreement_id=agreement_id)
        municipality = names.MUNICIPALITY.format(organization_number=agreement.municipality)
        check = _all(
            _requires(Municipality, municipality),
            _requires(VendorSystem, agreement.vendor_system),
        )
        return await self._create(agreement, request, check)

    async def get_agreement(self, name: str) -> Agreement:
        return await self._get(Agreement, name)

    async def list_agreements(
        self,
        page: PageRequest,
        *,
        municipality: str | None = None,
        vendor_system: str | None = None,
        state: AgreementState | None = None,
    ) -> Page[Agreement]:
        return await self.store.list_agreements(
            page, municipality=municipality, vendor_system=vendor_system, state=state
        )

    async def update_agreement(self, name: str, update: AgreementUpdate) -> Agreement:
        update.check()
        return await self._update(Agreement, name, update.apply)

    async def delete_agreement(self, name: str) -> int:
        return await self._delete(Agreement, name)

    # -- partner profiles --------------------------------------------------------------------

    async def get_partner_profile(self, organization_number: str) -> PartnerProfile:
        """The municipality's profile: empty until set; the municipality must exist."""
        if organization_number not in self.feed.snapshot.municipalities:
            municipality = names.MUNICIPALITY.format(organization_number=organization_number)
            await self._get(Municipality, municipality)
        name = names.PARTNER_PROFILE.format(organization_number=organization_number)
        profile = await self.store.find(PartnerProfile, name)
        return profile or PartnerProfile(organization_number)

    async def update_partner_profile(self, profile: PartnerProfile) -> PartnerProfile:
        """Sets the profile's mappings, whether one was set before or not."""
        municipality = names.MUNICIPALITY.format(organization_number=profile.municipality)
        updated = await self.store.update(
            PartnerProfile,
            profile.name,
            lambda stored: replace(stored, mappings=profile.mappings),
            _requires(Municipality, municipality),
            upsert=PartnerProfile(profile.municipality),
        )
        await self._applied(updated.revision)
        return updated

    # -- access and the change feed ----------------------------------------------------------

    def check_access(
        self, client_id: str, municipality: str, service_code: ServiceCode, action: Action
    ) -> Decision:
        """From this replica's snapshot, without a database read."""
        return self.feed.snapshot.decide(
            client_id, municipality, service_code, action, self._clock()
        )

    async def watch_changes(self, after: int) -> AsyncGenerator[tuple[list[Change], int], None]:
        """The changes after `after`, then each new one, each batch with the revision it reaches;
        an empty batch every heartbeat while nothing changes. Never past this replica's snapshot:
        a subscriber that has applied a change gets decisions that include it from here."""
        last_sent = -float("inf")
        while not self.feed.stopping.is_set():
            changes = await self.store.changes_after(after, up_to=self.feed.revision)
            if changes:
                after = changes[-1].revision
                last_sent = time.monotonic()
                yield changes, after
                continue
            if time.monotonic() - last_sent >= self._heartbeat:
                last_sent = time.monotonic()
                yield [], after
            await self.feed.wait_beyond(after, self._heartbeat)
