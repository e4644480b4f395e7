"""gRPC servicer of vkp.registry.v1.RegistryService: thin, proto <-> domain.

The field rules of the contract have been checked before a method runs; what they cannot check
(check digits, county codes, references between resources) is checked here or in the store's
transaction.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib import names
from vkp_lib.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from vkp_lib.rpc import Context
from vkp_registry import convert
from vkp_registry.domain.model import (
    Agreement,
    EpjEndpoint,
    Municipality,
    PartnerProfile,
    Vendor,
    VendorSystem,
)
from vkp_registry.domain.rules import check_municipality_number, check_organization_number
from vkp_registry.feed import Feed
from vkp_registry.store import (
    AGREEMENT,
    EPJ_ENDPOINT,
    MUNICIPALITY,
    PARTNER_PROFILE,
    VENDOR,
    VENDOR_SYSTEM,
    RegistryStore,
    agreements_table,
    fingerprint,
    municipalities_table,
    vendor_systems_table,
)


def _fields(mask: Any) -> set[str]:
    return set(mask.paths)


def _masked_fields_set(message: str, fields: set[str], present: dict[str, bool]) -> None:
    """An update may not clear a field a resource needs: each one in the mask must be set."""
    missing = [name for name, is_set in present.items() if name in fields and not is_set]
    if missing:
        raise InvalidArgument(
            "INVALID_UPDATE_MASK",
            f"{', '.join(missing)} in update_mask but not set",
            violations=[
                FieldViolation(f"{message}.{name}", "in update_mask, so it must be set")
                for name in missing
            ],
        )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        store: RegistryStore,
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
        await self.feed.wait_beyond(revision - 1, seconds=5.0)

    # -- municipalities ----------------------------------------------------------------------

    async def CreateMunicipality(
        self, request: pb.CreateMunicipalityRequest, context: Context
    ) -> pb.CreateMunicipalityResponse:
        m = convert.municipality_from_pb(request.municipality)
        check_organization_number(m.organization_number, "municipality.organization_number")
        check_municipality_number(m.municipality_number, "municipality.municipality_number")

        async def number_free(session: AsyncSession) -> None:
            if await self.store.municipality_number_taken(session, m.municipality_number):
                raise AlreadyExists(
                    "MUNICIPALITY_EXISTS", "a municipality has this kommunenummer already"
                )

        created = await self.store.create(
            m,
            request_id=request.request_id,
            method="CreateMunicipality",
            request_fingerprint=fingerprint(request.SerializeToString(deterministic=True)),
            check=number_free,
        )
        await self._applied(created.revision)
        return pb.CreateMunicipalityResponse(municipality=convert.municipality_to_pb(created))

    async def GetMunicipality(
        self, request: pb.GetMunicipalityRequest, context: Context
    ) -> pb.GetMunicipalityResponse:
        found = await self.store.get(MUNICIPALITY, request.name)
        return pb.GetMunicipalityResponse(municipality=convert.municipality_to_pb(found))

    async def ListMunicipalities(
        self, request: pb.ListMunicipalitiesRequest, context: Context
    ) -> pb.ListMunicipalitiesResponse:
        where = []
        if request.state:
            state = convert.MUNICIPALITY_STATES[request.state]
            where.append(municipalities_table.c.state == state.value)
        page = await self.store.page(
            MUNICIPALITY,
            page_size=request.page_size,
            page_token=request.page_token,
            where=where,
            filters=f"state={request.state}",
        )
        return pb.ListMunicipalitiesResponse(
            municipalities=[convert.municipality_to_pb(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateMunicipality(
        self, request: pb.UpdateMunicipalityRequest, context: Context
    ) -> pb.UpdateMunicipalityResponse:
        fields, given = _fields(request.update_mask), request.municipality
        _masked_fields_set(
            "municipality",
            fields,
            {"display_name": bool(given.display_name), "state": bool(given.state)},
        )

        def change(m: Municipality) -> Municipality:
            if "display_name" in fields:
                m = replace(m, display_name=given.display_name)
            if "state" in fields:
                m = replace(m, state=convert.MUNICIPALITY_STATES[given.state])
            return m

        updated = await self.store.update(MUNICIPALITY, given.name, change)
        await self._applied(updated.revision)
        return pb.UpdateMunicipalityResponse(municipality=convert.municipality_to_pb(updated))

    # -- vendors and their systems -----------------------------------------------------------

    async def CreateVendor(
        self, request: pb.CreateVendorRequest, context: Context
    ) -> pb.CreateVendorResponse:
        given = request.vendor
        check_organization_number(given.organization_number, "vendor.organization_number")
        created = await self.store.create(
            Vendor(given.organization_number, given.display_name),
            request_id=request.request_id,
            method="CreateVendor",
            request_fingerprint=fingerprint(request.SerializeToString(deterministic=True)),
        )
        await self._applied(created.revision)
        return pb.CreateVendorResponse(vendor=convert.vendor_to_pb(created))

    async def GetVendor(
        self, request: pb.GetVendorRequest, context: Context
    ) -> pb.GetVendorResponse:
        return pb.GetVendorResponse(
            vendor=convert.vendor_to_pb(await self.store.get(VENDOR, request.name))
        )

    async def ListVendors(
        self, request: pb.ListVendorsRequest, context: Context
    ) -> pb.ListVendorsResponse:
        page = await self.store.page(
            VENDOR, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListVendorsResponse(
            vendors=[convert.vendor_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    def _clients_free(
        self, name: str, client_ids: tuple[str, ...]
    ) -> Callable[..., Awaitable[None]]:
        async def check(session: AsyncSession, *_: Any) -> None:
            taken = await self.store.clients_taken(session, client_ids, by_other_than=name)
            if taken:
                raise AlreadyExists(
                    "CLIENT_ID_TAKEN",
                    "a client id belongs to another vendor system",
                    violations=[
                        FieldViolation(
                            "vendor_system.client_ids", f"{c} is taken", "CLIENT_ID_TAKEN"
                        )
                        for c in taken
                    ],
                )

        return check

    async def CreateVendorSystem(
        self, request: pb.CreateVendorSystemRequest, context: Context
    ) -> pb.CreateVendorSystemResponse:
        vendor_org = convert.organization_of(request.parent)
        system = VendorSystem(
            vendor_org,
            request.system_id,
            request.vendor_system.display_name,
            tuple(request.vendor_system.client_ids),
        )
        clients_free = self._clients_free(system.name, system.client_ids)

        async def check(session: AsyncSession) -> None:
            await self.store.require(session, VENDOR, request.parent)
            await clients_free(session)

        created = await self.store.create(
            system,
            request_id=request.request_id,
            method="CreateVendorSystem",
            request_fingerprint=fingerprint(request.SerializeToString(deterministic=True)),
            check=check,
        )
        await self._applied(created.revision)
        return pb.CreateVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(created))

    async def GetVendorSystem(
        self, request: pb.GetVendorSystemRequest, context: Context
    ) -> pb.GetVendorSystemResponse:
        found = await self.store.get(VENDOR_SYSTEM, request.name)
        return pb.GetVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(found))

    async def ListVendorSystems(
        self, request: pb.ListVendorSystemsRequest, context: Context
    ) -> pb.ListVendorSystemsResponse:
        where = []
        if request.parent != "vendors/-":
            where.append(vendor_systems_table.c.vendor == request.parent)
        if request.client_id:
            system = self.feed.snapshot.system_of_client.get(request.client_id, "")
            where.append(vendor_systems_table.c.name == system)
        page = await self.store.page(
            VENDOR_SYSTEM,
            page_size=request.page_size,
            page_token=request.page_token,
            where=where,
            filters=f"{request.parent}|{request.client_id}",
        )
        return pb.ListVendorSystemsResponse(
            vendor_systems=[convert.vendor_system_to_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateVendorSystem(
        self, request: pb.UpdateVendorSystemRequest, context: Context
    ) -> pb.UpdateVendorSystemResponse:
        fields, given = _fields(request.update_mask), request.vendor_system
        _masked_fields_set(
            "vendor_system",
            fields,
            {"display_name": bool(given.display_name), "client_ids": bool(given.client_ids)},
        )

        def change(s: VendorSystem) -> VendorSystem:
            if "display_name" in fields:
                s = replace(s, display_name=given.display_name)
            if "client_ids" in fields:
                s = replace(s, client_ids=tuple(given.client_ids))
            return s

        clients = self._clients_free(given.name, tuple(given.client_ids))
        updated = await self.store.update(VENDOR_SYSTEM, given.name, change, clients)
        await self._applied(updated.revision)
        return pb.UpdateVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(updated))

    # -- EPJ endpoints -----------------------------------------------------------------------

    async def CreateEpjEndpoint(
        self, request: pb.CreateEpjEndpointRequest, context: Context
    ) -> pb.CreateEpjEndpointResponse:
        org = convert.organization_of(request.parent)
        endpoint = convert.epj_endpoint_from_pb(org, request.epj_endpoint)

        async def check(session: AsyncSession) -> None:
            await self.store.require(session, MUNICIPALITY, request.parent)

        created = await self.store.create(
            endpoint,
            request_id=request.request_id,
            method="CreateEpjEndpoint",
            request_fingerprint=fingerprint(request.SerializeToString(deterministic=True)),
            check=check,
        )
        await self._applied(created.revision)
        return pb.CreateEpjEndpointResponse(epj_endpoint=convert.epj_endpoint_to_pb(created))

    async def GetEpjEndpoint(
        self, request: pb.GetEpjEndpointRequest, context: Context
    ) -> pb.GetEpjEndpointResponse:
        endpoint = await self.store.get(EPJ_ENDPOINT, request.name)
        place = self.feed.snapshot.municipalities.get(endpoint.municipality)
        state = (
            convert.MUNICIPALITY_STATE_PB[place.state]
            if place
            else pb.MUNICIPALITY_STATE_UNSPECIFIED
        )
        return pb.GetEpjEndpointResponse(
            epj_endpoint=convert.epj_endpoint_to_pb(endpoint), municipality_state=state
        )

    async def UpdateEpjEndpoint(
        self, request: pb.UpdateEpjEndpointRequest, context: Context
    ) -> pb.UpdateEpjEndpointResponse:
        fields, given = _fields(request.update_mask), request.epj_endpoint

        def change(e: EpjEndpoint) -> EpjEndpoint:
            values: dict[str, Any] = {}
            if "adapter" in fields:
                values["adapter"] = convert.ADAPTERS[given.adapter]
            if "base_url" in fields:
                values["base_url"] = given.base_url
            if "delivery_mode" in fields:
                values["delivery_mode"] = convert.DELIVERY_MODES[given.delivery_mode]
            if "credentials_secret" in fields:
                values["credentials_secret"] = given.credentials_secret
            if "request_timeout" in fields:
                values["request_timeout_seconds"] = (
                    convert.seconds(given.request_timeout)
                    if given.HasField("request_timeout")
                    else None
                )
            if "connect_timeout" in fields:
                values["connect_timeout_seconds"] = (
                    convert.seconds(given.connect_timeout)
                    if given.HasField("connect_timeout")
                    else None
                )
            return replace(e, **values)

        _masked_fields_set(
            "epj_endpoint",
            fields,
            {
                "adapter": bool(given.adapter),
                "base_url": bool(given.base_url),
                "delivery_mode": bool(given.delivery_mode),
            },
        )
        updated = await self.store.update(EPJ_ENDPOINT, given.name, change)
        await self._applied(updated.revision)
        return pb.UpdateEpjEndpointResponse(epj_endpoint=convert.epj_endpoint_to_pb(updated))

    async def DeleteEpjEndpoint(
        self, request: pb.DeleteEpjEndpointRequest, context: Context
    ) -> pb.DeleteEpjEndpointResponse:
        revision = await self.store.delete(EPJ_ENDPOINT, request.name)
        await self._applied(revision)
        return pb.DeleteEpjEndpointResponse(revision=revision)

    # -- agreements --------------------------------------------------------------------------

    async def CreateAgreement(
        self, request: pb.CreateAgreementRequest, context: Context
    ) -> pb.CreateAgreementResponse:
        org = convert.organization_of(request.parent)
        agreement_id = (
            request.agreement_id
            or (
                f"{convert.organization_of(request.agreement.vendor_system)}-"
                f"{request.agreement.vendor_system.rsplit('/', 1)[1]}"
            )[:63]
        )
        agreement = convert.agreement_from_pb(org, agreement_id, request.agreement)

        async def check(session: AsyncSession) -> None:
            await self.store.require(session, MUNICIPALITY, request.parent)
            await self.store.require(session, VENDOR_SYSTEM, agreement.vendor_system)

        created = await self.store.create(
            agreement,
            request_id=request.request_id,
            method="CreateAgreement",
            request_fingerprint=fingerprint(request.SerializeToString(deterministic=True)),
            check=check,
        )
        await self._applied(created.revision)
        return pb.CreateAgreementResponse(agreement=convert.agreement_to_pb(created))

    async def GetAgreement(
        self, request: pb.GetAgreementRequest, context: Context
    ) -> pb.GetAgreementResponse:
        found = await self.store.get(AGREEMENT, request.name)
        return pb.GetAgreementResponse(agreement=convert.agreement_to_pb(found))

    async def ListAgreements(
        self, request: pb.ListAgreementsRequest, context: Context
    ) -> pb.ListAgreementsResponse:
        where: list[sa.ColumnElement[bool]] = []
        if request.parent != "municipalities/-":
            where.append(agreements_table.c.municipality == convert.organization_of(request.parent))
        if request.vendor_system:
            where.append(agreements_table.c.vendor_system == request.vendor_system)
        if request.state:
            where.append(agreements_table.c.state == convert.AGREEMENT_STATES[request.state].value)
        page = await self.store.page(
            AGREEMENT,
            page_size=request.page_size,
            page_token=request.page_token,
            where=where,
            filters=f"{request.parent}|{request.vendor_system}|{request.state}",
        )
        return pb.ListAgreementsResponse(
            agreements=[convert.agreement_to_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateAgreement(
        self, request: pb.UpdateAgreementRequest, context: Context
    ) -> pb.UpdateAgreementResponse:
        fields, given = _fields(request.update_mask), request.agreement
        start, end = convert.validity_from_pb(given)

        def change(a: Agreement) -> Agreement:
            values: dict[str, Any] = {}
            if "service_codes" in fields:
                values["service_codes"] = tuple(
                    convert.SERVICE_CODES[c] for c in given.service_codes
                )
            if "actions" in fields:
                values["actions"] = tuple(convert.ACTIONS[x] for x in given.actions)
            if "validity" in fields:
                values["valid_from"], values["valid_until"] = start, end
            if "state" in fields:
                values["state"] = convert.AGREEMENT_STATES[given.state]
            return replace(a, **values)

        _masked_fields_set(
            "agreement",
            fields,
            {
                "service_codes": bool(given.service_codes),
                "actions": bool(given.actions),
                "state": bool(given.state),
            },
        )
        updated = await self.store.update(AGREEMENT, given.name, change)
        await self._applied(updated.revision)
        return pb.UpdateAgreementResponse(agreement=convert.agreement_to_pb(updated))

    async def DeleteAgreement(
        self, request: pb.DeleteAgreementRequest, context: Context
    ) -> pb.DeleteAgreementResponse:
        revision = await self.store.delete(AGREEMENT, request.name)
        await self._applied(revision)
        return pb.DeleteAgreementResponse(revision=revision)

    # -- partner profiles --------------------------------------------------------------------

    async def GetPartnerProfile(
        self, request: pb.GetPartnerProfileRequest, context: Context
    ) -> pb.GetPartnerProfileResponse:
        org = convert.organization_of(request.name)
        if org not in self.feed.snapshot.municipalities:
            await self.store.get(
                MUNICIPALITY, names.MUNICIPALITY.format(organization_number=org)
            )  # NOT_FOUND if none
        try:
            profile = await self.store.get(PARTNER_PROFILE, request.name)
        except NotFound:
            profile = PartnerProfile(org)
        return pb.GetPartnerProfileResponse(partner_profile=convert.partner_profile_to_pb(profile))

    async def UpdatePartnerProfile(
        self, request: pb.UpdatePartnerProfileRequest, context: Context
    ) -> pb.UpdatePartnerProfileResponse:
        given = request.partner_profile
        org = convert.organization_of(given.name)
        mappings = convert.mappings_from_pb(given)

        async def municipality_exists(session: AsyncSession, _: Any) -> None:
            await self.store.require(
                session, MUNICIPALITY, names.MUNICIPALITY.format(organization_number=org)
            )

        updated = await self.store.update(
            PARTNER_PROFILE,
            given.name,
            lambda p: replace(p, mappings=mappings),
            municipality_exists,
            upsert=PartnerProfile(org),
        )
        await self._applied(updated.revision)
        return pb.UpdatePartnerProfileResponse(
            partner_profile=convert.partner_profile_to_pb(updated)
        )

    # -- access and the change feed ----------------------------------------------------------

    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: Context
    ) -> pb.CheckAccessResponse:
        decision = self.feed.snapshot.decide(
            request.client_id,
            request.municipality,
            convert.SERVICE_CODES[request.service_code],
            convert.ACTIONS[request.action],
            self._clock(),
        )
        return pb.CheckAccessResponse(decision=convert.decision_to_pb(decision))

    async def WatchChanges(
        self, request: pb.WatchChangesRequest, context: Context
    ) -> AsyncIterator[pb.WatchChangesResponse]:
        after = request.after_revision
        last_sent = -float("inf")
        while not self.feed.stopping.is_set():
            # No further than this replica's snapshot: a subscriber that has applied a change
            # gets decisions that include it from this replica.
            changes = await self.store.changes_after(after, up_to=self.feed.revision)
            if changes:
                after = changes[-1].revision
                last_sent = time.monotonic()
                yield pb.WatchChangesResponse(
                    changes=[convert.change_to_pb(c) for c in changes], head_revision=after
                )
                continue
            if time.monotonic() - last_sent >= self._heartbeat:
                last_sent = time.monotonic()
                yield pb.WatchChangesResponse(head_revision=after)
            await self.feed.wait_beyond(after, self._heartbeat)
