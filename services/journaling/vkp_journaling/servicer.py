"""gRPC servicer of vkp.journaling.v1.JournalingService: thin, proto <-> domain.

The service serves its whole contract. An RPC whose step has not come yet raises
NotImplementedError, which the runner answers UNIMPLEMENTED with the reason NOT_IMPLEMENTED,
after the request has passed authentication and the field rules of the contract.
"""

from __future__ import annotations

from vkp.journaling.v1 import journaling_pb2, journaling_pb2_grpc
from vkp_lib.rpc import Context


class JournalingServicer(journaling_pb2_grpc.JournalingServiceServicer):
    async def Enqueue(
        self, request: journaling_pb2.EnqueueRequest, context: Context
    ) -> journaling_pb2.EnqueueResponse:
        raise NotImplementedError

    async def GetEntry(
        self, request: journaling_pb2.GetEntryRequest, context: Context
    ) -> journaling_pb2.GetEntryResponse:
        raise NotImplementedError

    async def ListEntries(
        self, request: journaling_pb2.ListEntriesRequest, context: Context
    ) -> journaling_pb2.ListEntriesResponse:
        raise NotImplementedError

    async def ListDeadLetters(
        self, request: journaling_pb2.ListDeadLettersRequest, context: Context
    ) -> journaling_pb2.ListDeadLettersResponse:
        raise NotImplementedError

    async def RetryEntry(
        self, request: journaling_pb2.RetryEntryRequest, context: Context
    ) -> journaling_pb2.RetryEntryResponse:
        raise NotImplementedError

    async def ListPending(
        self, request: journaling_pb2.ListPendingRequest, context: Context
    ) -> journaling_pb2.ListPendingResponse:
        raise NotImplementedError

    async def Acknowledge(
        self, request: journaling_pb2.AcknowledgeRequest, context: Context
    ) -> journaling_pb2.AcknowledgeResponse:
        raise NotImplementedError
