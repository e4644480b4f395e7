"""gRPC servicer of vkp.registry.v1.RegistryService: thin, proto <-> domain.

The service serves its whole contract. An RPC whose step has not come yet raises
NotImplementedError, which the runner answers UNIMPLEMENTED with the reason NOT_IMPLEMENTED,
after the request has passed authentication and the field rules of the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.rpc import Context


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    async def CreateMunicipality(
        self, request: registry_pb2.CreateMunicipalityRequest, context: Context
    ) -> registry_pb2.CreateMunicipalityResponse:
        raise NotImplementedError

    async def GetMunicipality(
        self, request: registry_pb2.GetMunicipalityRequest, context: Context
    ) -> registry_pb2.GetMunicipalityResponse:
        raise NotImplementedError

    async def ListMunicipalities(
        self, request: registry_pb2.ListMunicipalitiesRequest, context: Context
    ) -> registry_pb2.ListMunicipalitiesResponse:
        raise NotImplementedError

    async def UpdateMunicipality(
        self, request: registry_pb2.UpdateMunicipalityRequest, context: Context
    ) -> registry_pb2.UpdateMunicipalityResponse:
        raise NotImplementedError

    async def CreateVendor(
        self, request: registry_pb2.CreateVendorRequest, context: Context
    ) -> registry_pb2.CreateVendorResponse:
        raise NotImplementedError

    async def GetVendor(
        self, request: registry_pb2.GetVendorRequest, context: Context
    ) -> registry_pb2.GetVendorResponse:
        raise NotImplementedError

    async def ListVendors(
        self, request: registry_pb2.ListVendorsRequest, context: Context
    ) -> registry_pb2.ListVendorsResponse:
        raise NotImplementedError

    async def CreateVendorSystem(
        self, request: registry_pb2.CreateVendorSystemRequest, context: Context
    ) -> registry_pb2.CreateVendorSystemResponse:
        raise NotImplementedError

    async def GetVendorSystem(
        self, request: registry_pb2.GetVendorSystemRequest, context: Context
    ) -> registry_pb2.GetVendorSystemResponse:
        raise NotImplementedError

    async def ListVendorSystems(
        self, request: registry_pb2.ListVendorSystemsRequest, context: Context
    ) -> registry_pb2.ListVendorSystemsResponse:
        raise NotImplementedError

    async def UpdateVendorSystem(
        self, request: registry_pb2.UpdateVendorSystemRequest, context: Context
    ) -> registry_pb2.UpdateVendorSystemResponse:
        raise NotImplementedError

    async def CreateEpjEndpoint(
        self, request: registry_pb2.CreateEpjEndpointRequest, context: Context
    ) -> registry_pb2.CreateEpjEndpointResponse:
        raise NotImplementedError

    async def GetEpjEndpoint(
        self, request: registry_pb2.GetEpjEndpointRequest, context: Context
    ) -> registry_pb2.GetEpjEndpointResponse:
        raise NotImplementedError

    async def UpdateEpjEndpoint(
        self, request: registry_pb2.UpdateEpjEndpointRequest, context: Context
    ) -> registry_pb2.UpdateEpjEndpointResponse:
        raise NotImplementedError

    async def DeleteEpjEndpoint(
        self, request: registry_pb2.DeleteEpjEndpointRequest, context: Context
    ) -> registry_pb2.DeleteEpjEndpointResponse:
        raise NotImplementedError

    async def CreateAgreement(
        self, request: registry_pb2.CreateAgreementRequest, context: Context
    ) -> registry_pb2.CreateAgreementResponse:
        raise NotImplementedError

    async def GetAgreement(
        self, request: registry_pb2.GetAgreementRequest, context: Context
    ) -> registry_pb2.GetAgreementResponse:
        raise NotImplementedError

    async def ListAgreements(
        self, request: registry_pb2.ListAgreementsRequest, context: Context
    ) -> registry_pb2.ListAgreementsResponse:
        raise NotImplementedError

    async def UpdateAgreement(
        self, request: registry_pb2.UpdateAgreementRequest, context: Context
    ) -> registry_pb2.UpdateAgreementResponse:
        raise NotImplementedError

    async def DeleteAgreement(
        self, request: registry_pb2.DeleteAgreementRequest, context: Context
    ) -> registry_pb2.DeleteAgreementResponse:
        raise NotImplementedError

    async def GetPartnerProfile(
        self, request: registry_pb2.GetPartnerProfileRequest, context: Context
    ) -> registry_pb2.GetPartnerProfileResponse:
        raise NotImplementedError

    async def UpdatePartnerProfile(
        self, request: registry_pb2.UpdatePartnerProfileRequest, context: Context
    ) -> registry_pb2.UpdatePartnerProfileResponse:
        raise NotImplementedError

    async def CheckAccess(
        self, request: registry_pb2.CheckAccessRequest, context: Context
    ) -> registry_pb2.CheckAccessResponse:
        raise NotImplementedError

    async def WatchChanges(
        self, request: registry_pb2.WatchChangesRequest, context: Context
    ) -> AsyncIterator[registry_pb2.WatchChangesResponse]:
        raise NotImplementedError
        yield  # pragma: no cover - makes this an async generator
