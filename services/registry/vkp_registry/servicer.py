"""gRPC servicer of vkp.registry.v1.RegistryService: proto -> convert -> use case -> convert ->
proto, and nothing else. The contract's field rules have been checked before a method runs; the
rest is in `service` (the use cases) and `domain` (the rules)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from vkp.registry.v1 import registry_pb2 as pb
from vkp.registry.v1 import registry_pb2_grpc
from vkp_lib import names
from vkp_lib.rpc import Context
from vkp_registry import convert
from vkp_registry.service import RegistryService


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, service: RegistryService) -> None:
        self.service = service

    # -- municipalities ----------------------------------------------------------------------

    async def CreateMunicipality(
        self, request: pb.CreateMunicipalityRequest, context: Context
    ) -> pb.CreateMunicipalityResponse:
        created = await self.service.create_municipality(
            convert.municipality_from_pb(request.municipality), convert.request_key(request)
        )
        return pb.CreateMunicipalityResponse(municipality=convert.municipality_to_pb(created))

    async def GetMunicipality(
        self, request: pb.GetMunicipalityRequest, context: Context
    ) -> pb.GetMunicipalityResponse:
        found = await self.service.get_municipality(request.name)
        return pb.GetMunicipalityResponse(municipality=convert.municipality_to_pb(found))

    async def ListMunicipalities(
        self, request: pb.ListMunicipalitiesRequest, context: Context
    ) -> pb.ListMunicipalitiesResponse:
        page = await self.service.list_municipalities(
            convert.page(request, f"state={request.state}"),
            state=convert.MUNICIPALITY_STATES.get(request.state),
        )
        return pb.ListMunicipalitiesResponse(
            municipalities=[convert.municipality_to_pb(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateMunicipality(
        self, request: pb.UpdateMunicipalityRequest, context: Context
    ) -> pb.UpdateMunicipalityResponse:
        updated = await self.service.update_municipality(
            request.municipality.name, convert.municipality_update(request)
        )
        return pb.UpdateMunicipalityResponse(municipality=convert.municipality_to_pb(updated))

    # -- vendors and their systems -----------------------------------------------------------

    async def CreateVendor(
        self, request: pb.CreateVendorRequest, context: Context
    ) -> pb.CreateVendorResponse:
        created = await self.service.create_vendor(
            convert.vendor_from_pb(request.vendor), convert.request_key(request)
        )
        return pb.CreateVendorResponse(vendor=convert.vendor_to_pb(created))

    async def GetVendor(
        self, request: pb.GetVendorRequest, context: Context
    ) -> pb.GetVendorResponse:
        found = await self.service.get_vendor(request.name)
        return pb.GetVendorResponse(vendor=convert.vendor_to_pb(found))

    async def ListVendors(
        self, request: pb.ListVendorsRequest, context: Context
    ) -> pb.ListVendorsResponse:
        page = await self.service.list_vendors(convert.page(request))
        return pb.ListVendorsResponse(
            vendors=[convert.vendor_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def CreateVendorSystem(
        self, request: pb.CreateVendorSystemRequest, context: Context
    ) -> pb.CreateVendorSystemResponse:
        created = await self.service.create_vendor_system(
            convert.vendor_system_from_pb(request), convert.request_key(request)
        )
        return pb.CreateVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(created))

    async def GetVendorSystem(
        self, request: pb.GetVendorSystemRequest, context: Context
    ) -> pb.GetVendorSystemResponse:
        found = await self.service.get_vendor_system(request.name)
        return pb.GetVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(found))

    async def ListVendorSystems(
        self, request: pb.ListVendorSystemsRequest, context: Context
    ) -> pb.ListVendorSystemsResponse:
        page = await self.service.list_vendor_systems(
            convert.page(request, request.parent, request.client_id),
            vendor=convert.organization_filter(names.VENDOR, request.parent),
            client_id=request.client_id,
        )
        return pb.ListVendorSystemsResponse(
            vendor_systems=[convert.vendor_system_to_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateVendorSystem(
        self, request: pb.UpdateVendorSystemRequest, context: Context
    ) -> pb.UpdateVendorSystemResponse:
        updated = await self.service.update_vendor_system(
            request.vendor_system.name, convert.vendor_system_update(request)
        )
        return pb.UpdateVendorSystemResponse(vendor_system=convert.vendor_system_to_pb(updated))

    # -- EPJ endpoints -----------------------------------------------------------------------

    async def CreateEpjEndpoint(
        self, request: pb.CreateEpjEndpointRequest, context: Context
    ) -> pb.CreateEpjEndpointResponse:
        created = await self.service.create_epj_endpoint(
            convert.epj_endpoint_from_pb(request), convert.request_key(request)
        )
        return pb.CreateEpjEndpointResponse(epj_endpoint=convert.epj_endpoint_to_pb(created))

    async def GetEpjEndpoint(
        self, request: pb.GetEpjEndpointRequest, context: Context
    ) -> pb.GetEpjEndpointResponse:
        endpoint, state = await self.service.get_epj_endpoint(request.name)
        return pb.GetEpjEndpointResponse(
            epj_endpoint=convert.epj_endpoint_to_pb(endpoint),
            municipality_state=convert.municipality_state_to_pb(state),
        )

    async def UpdateEpjEndpoint(
        self, request: pb.UpdateEpjEndpointRequest, context: Context
    ) -> pb.UpdateEpjEndpointResponse:
        updated = await self.service.update_epj_endpoint(
            request.epj_endpoint.name, convert.epj_endpoint_update(request)
        )
        return pb.UpdateEpjEndpointResponse(epj_endpoint=convert.epj_endpoint_to_pb(updated))

    async def DeleteEpjEndpoint(
        self, request: pb.DeleteEpjEndpointRequest, context: Context
    ) -> pb.DeleteEpjEndpointResponse:
        revision = await self.service.delete_epj_endpoint(request.name)
        return pb.DeleteEpjEndpointResponse(revision=revision)

    # -- agreements --------------------------------------------------------------------------

    async def CreateAgreement(
        self, request: pb.CreateAgreementRequest, context: Context
    ) -> pb.CreateAgreementResponse:
        created = await self.service.create_agreement(
            convert.agreement_from_pb(request), convert.request_key(request)
        )
        return pb.CreateAgreementResponse(agreement=convert.agreement_to_pb(created))

    async def GetAgreement(
        self, request: pb.GetAgreementRequest, context: Context
    ) -> pb.GetAgreementResponse:
        found = await self.service.get_agreement(request.name)
        return pb.GetAgreementResponse(agreement=convert.agreement_to_pb(found))

    async def ListAgreements(
        self, request: pb.ListAgreementsRequest, context: Context
    ) -> pb.ListAgreementsResponse:
        page = await self.service.list_agreements(
            convert.page(request, request.parent, request.vendor_system, request.state),
            municipality=convert.organization_filter(names.MUNICIPALITY, request.parent),
            vendor_system=request.vendor_system or None,
            state=convert.AGREEMENT_STATES.get(request.state),
        )
        return pb.ListAgreementsResponse(
            agreements=[convert.agreement_to_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateAgreement(
        self, request: pb.UpdateAgreementRequest, context: Context
    ) -> pb.UpdateAgreementResponse:
        updated = await self.service.update_agreement(
            request.agreement.name, convert.agreement_update(request)
        )
        return pb.UpdateAgreementResponse(agreement=convert.agreement_to_pb(updated))

    async def DeleteAgreement(
        self, request: pb.DeleteAgreementRequest, context: Context
    ) -> pb.DeleteAgreementResponse:
        revision = await self.service.delete_agreement(request.name)
        return pb.DeleteAgreementResponse(revision=revision)

    # -- partner profiles --------------------------------------------------------------------

    async def GetPartnerProfile(
        self, request: pb.GetPartnerProfileRequest, context: Context
    ) -> pb.GetPartnerProfileResponse:
        profile = await self.service.get_partner_profile(
            convert.organization_number(names.PARTNER_PROFILE, request.name)
        )
        return pb.GetPartnerProfileResponse(partner_profile=convert.partner_profile_to_pb(profile))

    async def UpdatePartnerProfile(
        self, request: pb.UpdatePartnerProfileRequest, context: Context
    ) -> pb.UpdatePartnerProfileResponse:
        updated = await self.service.update_partner_profile(
            convert.partner_profile_from_pb(request.partner_profile)
        )
        return pb.UpdatePartnerProfileResponse(
            partner_profile=convert.partner_profile_to_pb(updated)
        )

    # -- access and the change feed ----------------------------------------------------------

    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: Context
    ) -> pb.CheckAccessResponse:
        decision = self.service.check_access(
            request.client_id,
            request.municipality,
            convert.SERVICE_CODES[request.service_code],
            convert.ACTIONS[request.action],
        )
        return pb.CheckAccessResponse(decision=convert.decision_to_pb(decision))

    async def WatchChanges(
        self, request: pb.WatchChangesRequest, context: Context
    ) -> AsyncIterator[pb.WatchChangesResponse]:
        async with aclosing(self.service.watch_changes(request.after_revision)) as batches:
            async for changes, head in batches:
                yield pb.WatchChangesResponse(
                    changes=[convert.change_to_pb(c) for c in changes], head_revision=head
                )
