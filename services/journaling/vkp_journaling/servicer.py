"""gRPC servicer of vkp.journaling.v1.JournalingService: thin, proto <-> domain.

RPCs whose step has not come yet raise NotImplementedError, which the runner answers with
UNIMPLEMENTED and the reason NOT_IMPLEMENTED.
"""

from __future__ import annotations

from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp_lib.rpc import Context


class JournalingServicer(journaling_pb2_grpc.JournalingServiceServicer):
    async def GetEntry(
        self, request: journaling_pb2.GetEntryRequest, context: Context
    ) -> journaling_pb2.GetEntryResponse:
        raise NotImplementedError
