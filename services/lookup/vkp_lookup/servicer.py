"""gRPC servicer of vkp.lookup.v1.LookupService: thin, proto <-> domain.

RPCs whose step has not come yet raise NotImplementedError, which the runner answers with
UNIMPLEMENTED and the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from vkp.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from vkp_lib.rpc import Context


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    async def GetPatient(
        self, request: lookup_pb2.GetPatientRequest, context: Context
    ) -> lookup_pb2.GetPatientResponse:
        raise NotImplementedError
