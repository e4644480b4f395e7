"""gRPC servicer of vkp.ingest.v1.IngestService: thin, proto <-> domain.

The service serves its whole contract. An RPC whose step has not come yet raises
NotImplementedError, which the runner answers UNIMPLEMENTED with the reason NOT_IMPLEMENTED,
after the request has passed authentication and the field rules of the contract.
"""

from __future__ import annotations

from vkp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from vkp_lib.rpc import Context


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    async def SubmitEvent(
        self, request: ingest_pb2.SubmitEventRequest, context: Context
    ) -> ingest_pb2.SubmitEventResponse:
        raise NotImplementedError

    async def SubmitEvents(
        self, request: ingest_pb2.SubmitEventsRequest, context: Context
    ) -> ingest_pb2.SubmitEventsResponse:
        raise NotImplementedError

    async def GetEventStatus(
        self, request: ingest_pb2.GetEventStatusRequest, context: Context
    ) -> ingest_pb2.GetEventStatusResponse:
        raise NotImplementedError

    async def CheckOpenAlarm(
        self, request: ingest_pb2.CheckOpenAlarmRequest, context: Context
    ) -> ingest_pb2.CheckOpenAlarmResponse:
        raise NotImplementedError
