"""gRPC servicer of vkp.registry.v1.RegistryService: thin, proto <-> domain.

RPCs whose step has not come yet raise NotImplementedError, which the runner answers with
UNIMPLEMENTED and the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.rpc import Context


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    async def GetMunicipality(
        self, request: registry_pb2.GetMunicipalityRequest, context: Context
    ) -> registry_pb2.GetMunicipalityResponse:
        raise NotImplementedError
